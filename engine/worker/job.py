"""A fetched task on its way through one worker: message, task, and settlement state."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.worker.wire import RequestFields, request_of

if TYPE_CHECKING:
    from engine.broker.base import Delivery
    from engine.protocol.task import TaskMessage
    from engine.request import Request
    from engine.task import Task


@dataclass(slots=True, eq=False)
class Job:
    delivery: Delivery
    message: TaskMessage
    task: Task
    acks_late: bool
    hard_limit: float | None
    soft_limit: float | None
    acked: bool = False
    time_start: float | None = None
    worker_pid: int | None = None
    epoch: int = 0  # the owner's lease epoch when it was fetched (see ``Maintenance.lease_holds``)

    @property
    def id(self) -> str:
        return self.message.id

    @property
    def name(self) -> str:
        return self.message.name

    def request(self, hostname: str) -> Request:
        return self.request_fields(hostname).build()

    def request_fields(self, hostname: str) -> RequestFields:
        """The request as a named tuple: that is what crosses the pipe to a pool child."""
        return request_of(self.message, hostname, self.ignores_result(), self.hard_limit, self.soft_limit)

    def ignores_result(self) -> bool:
        """The task's own ``ignore_result`` (or the app's default); the message may still ask for it."""
        return bool(self.task.opt("ignore_result", "task_ignore_result"))

    def info(self, hostname: str) -> dict[str, Any]:
        """Celery's request-info dict (what ``inspect active`` shows)."""
        pid = self.worker_pid or (os.getpid() if self.time_start else None)
        return request_info(self.message, hostname, self.time_start, self.acked, pid)


def request_info(
    message: TaskMessage,
    hostname: str,
    time_start: float | None = None,
    acknowledged: bool = False,
    worker_pid: int | None = None,
) -> dict[str, Any]:
    """Celery's request-info dict for a message, run or not (an ETA task held until due has no
    start time, ack or process yet, and Celery lists it so)."""
    return {
        "id": message.id,
        "name": message.name,
        "args": message.args,
        "kwargs": message.kwargs,
        "type": message.name,
        "hostname": hostname,
        "time_start": time_start,
        "acknowledged": acknowledged,
        "delivery_info": message.delivery_info,
        "worker_pid": worker_pid,
    }
