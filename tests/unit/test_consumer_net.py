"""The consumer's last nets (issue 13 item 1): an error that is neither the broker's nor one message's
never ends the fetch loop silently. It retries with backoff; if it keeps failing, the worker is stopped
(so what it holds is handed back) rather than left heartbeating while it fetches nothing.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from engine import App
from engine.worker.consumer import GIVE_UP_AFTER, Consumer


class Instant(threading.Event):
    """``stopping``: waits return at once, so the loop's backoff costs no test time."""

    def wait(self, timeout: float | None = None) -> bool:
        return self.is_set()


class Acker:
    def take(self) -> list[str]:
        return []

    def put_back(self, tags: Any) -> None:
        pass


class BrokenBroker:
    def __init__(self) -> None:
        self.calls = 0

    def fetch(self, *args: Any) -> list[Any]:
        self.calls += 1
        raise RuntimeError("a bug in fetch")


class StubWorker:
    def __init__(self) -> None:
        self.app = App("net-test", broker="redis://127.0.0.1:1/0")
        self.broker = BrokenBroker()
        self.prefetch, self.queues, self.owner = 4, ["celery"], "me"
        self.stopping = Instant()
        self.reserved: dict[str, Any] = {}
        self.capacity = SimpleNamespace(limit=4, room=lambda: 4, wait_for_room=lambda timeout: None)
        self.settlement = SimpleNamespace(acker=Acker())
        self.stop_requests = 0
        self.maintenance = SimpleNamespace(epoch=0)  # the lease epoch the consumer stamps on fetched jobs

    def request_stop(self, cold: bool = False) -> None:
        self.stop_requests += 1
        self.stopping.set()


def test_a_fetch_loop_that_keeps_failing_stops_the_worker() -> None:
    worker = StubWorker()
    Consumer(worker).run()  # type: ignore[arg-type]  # returns: it did not hang or die silently
    assert worker.broker.calls == GIVE_UP_AFTER
    assert worker.stop_requests == 1


def test_an_error_escaping_the_loop_stops_the_worker() -> None:
    worker = StubWorker()
    consumer = Consumer(worker)  # type: ignore[arg-type]

    def explode() -> None:
        raise KeyboardInterrupt  # not an Exception: not caught by the loop's own net

    consumer._loop = explode  # type: ignore[method-assign]
    try:
        consumer.run()
    except KeyboardInterrupt:
        pass
    assert worker.stop_requests == 1
