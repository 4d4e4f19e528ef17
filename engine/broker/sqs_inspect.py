"""The operator's view of an SQS broker.

SQS answers an approximate count of a queue's visible messages and can purge a queue, and that
is what it offers: no message can be read without receiving it (no peek), a countdown task is
held by the worker that received it until due (no delayed set here to move), and the broker
does not know its consumers. History, the failure inbox and results are on the Redis result
backend, where a worker on SQS writes them (``engine.broker.sqs_fanout``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from engine.broker.inspect import BackendState, NotHere, QueueFigures, Sign
from engine.broker.sqs import SqsBroker
from engine.history import History

DEFAULT_QUEUES = ("celery",)


class SqsView:
    discovery_error: str | None = None  # nothing to ask

    def __init__(self, url: str, backend_url: str | None) -> None:
        self.url = url
        self.broker = SqsBroker(url)
        self._state = BackendState(backend_url)
        self.store: Any = self._state.store
        self.history: History | None = self._state.history

    def close(self) -> None:
        self.broker.close()
        self._state.close()

    def ping(self) -> None:
        self.broker.ping()

    def server(self) -> str:
        host = urlsplit(str(self.url)).hostname
        return f"sqs {host}" if host else "sqs"

    def discover(self) -> None:
        """Nothing to scan: the queues a worker consumes are added from its replies, if any."""

    def queue_names(self) -> list[str]:
        return list(DEFAULT_QUEUES)

    def queues(self, names: list[str]) -> list[QueueFigures]:
        return [QueueFigures(name, self.broker.queue_depth(name), None) for name in names]

    def buckets(self, queue: str) -> list[dict[str, int]]:
        return []  # SQS has no priorities

    def peek(self, queue: str, limit: int = 100) -> list[dict[str, Any]]:
        raise NotHere("SQS shows a message only by receiving it: queues cannot be peeked on SQS")

    def delayed(self, limit: int = 200) -> tuple[list[dict[str, Any]], int]:
        return [], 0  # held by the workers that received them until due

    def parked(self, task_id: str) -> dict[str, Any] | None:
        return None  # no delayed set to look in: held by the workers that received them until due

    def run_now(self, task_id: str, sign: Sign) -> str:
        raise NotHere(
            f"cannot move {task_id}: SQS keeps no delayed set (a task waiting for its ETA is held by a worker "
            "or hidden by its delay); revoke it and send it again to run it now"
        )

    def result_meta(self, task_id: str) -> dict[str, Any] | None:
        return self._state.result_meta(task_id)
