"""A fetched task on its way through one worker: message, task, and settlement state."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.worker.wire import RequestFields

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
        m = self.message
        embed = m.embed
        h = m.headers
        return RequestFields(
            id=m.id,
            name=m.name,
            args=m.args,
            kwargs=m.kwargs,
            retries=m.retries,
            hostname=hostname,
            delivery_info=m.delivery_info,
            root_id=m.root_id,
            parent_id=m.parent_id,
            group=m.group,
            group_index=h.get("group_index"),
            eta=h.get("eta"),
            expires=h.get("expires"),
            message_headers=h,
            callbacks=embed.get("callbacks"),
            errbacks=embed.get("errbacks"),
            chain=embed.get("chain"),
            chord=embed.get("chord"),
            origin=h.get("origin"),
            ignore_result=bool(m.ignore_result or self.task.opt("ignore_result", "task_ignore_result")),
            timelimit=(self.hard_limit, self.soft_limit),
            is_eager=False,
            called_directly=False,
            properties=m.properties,
        )

    def info(self, hostname: str) -> dict[str, Any]:
        """Celery's request-info dict (what ``inspect active`` shows)."""
        return {
            "id": self.id,
            "name": self.name,
            "args": self.message.args,
            "kwargs": self.message.kwargs,
            "type": self.name,
            "hostname": hostname,
            "time_start": self.time_start,
            "acknowledged": self.acked,
            "delivery_info": self.message.delivery_info,
            "worker_pid": self.worker_pid or (os.getpid() if self.time_start else None),
        }
