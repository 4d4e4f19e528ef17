"""The worker's small parts on their own: observers are contained, settlements are retried until
they land, and the capacity window wakes a waiting consumer when a slot frees."""

from __future__ import annotations

import threading
from typing import Any

from engine import App, resp
from engine.worker.capacity import Capacity
from engine.worker.observers import Observer, Observers
from engine.worker.settlement import Settlement


class Broken(Observer):
    def finished(self, job: Any, outcome: Any) -> None:
        raise RuntimeError("an observer bug")


class Counting(Observer):
    def __init__(self) -> None:
        self.finished_calls = 0

    def finished(self, job: Any, outcome: Any) -> None:
        self.finished_calls += 1


def test_a_failing_observer_neither_raises_nor_silences_the_next() -> None:
    counting = Counting()
    observers = Observers(Broken(), counting)
    observers.finished(object(), object())  # type: ignore[arg-type]  # must not raise: settling goes on
    assert counting.finished_calls == 1
    observers.received(object())  # type: ignore[arg-type]  # nobody overrides it: nothing is called


class FlakyBroker:
    """Unreachable for the first ``down`` calls, then records each requeue."""

    url = "redis://127.0.0.1:1/0"

    def __init__(self, down: int) -> None:
        self.down = down
        self.requeued: list[str] = []

    def requeue(self, owner: str, tags: list[str]) -> int:
        if self.down:
            self.down -= 1
            raise resp.ConnectionError("broker away")
        self.requeued += tags
        return len(tags)


def test_a_requeue_that_fails_is_retried_until_it_lands() -> None:
    broker = FlakyBroker(down=2)
    settlement = Settlement(App("parts", broker="redis://127.0.0.1:1/0"), broker, "me", "w1")  # type: ignore[arg-type]
    settlement.later("requeue t1", lambda: broker.requeue("me", ["tag-1"]))
    assert settlement.pending and broker.requeued == []
    settlement.retry_pending()  # still away: kept
    assert settlement.pending
    settlement.retry_pending()
    assert not settlement.pending and broker.requeued == ["tag-1"]


def test_a_full_window_wakes_the_waiting_consumer_on_release() -> None:
    capacity = Capacity(1, threading.Event())
    capacity.take()
    assert capacity.room() == 0
    woke = threading.Event()

    def consumer() -> None:
        capacity.wait_while(lambda: capacity.room() <= 0, timeout=30)
        woke.set()

    thread = threading.Thread(target=consumer)
    thread.start()
    capacity.release()
    thread.join(30)
    assert woke.is_set() and capacity.room() == 1
