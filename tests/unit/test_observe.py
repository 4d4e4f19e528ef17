"""EventTee: listeners see every event the worker emits, and the real dispatcher is unchanged."""

from __future__ import annotations

from typing import Any

from tqctl.observe import EventTee


class Dispatcher:
    def __init__(self) -> None:
        self.hostname = "w1@h"
        self.enabled = True
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def task(self, event_type: str, **fields: Any) -> None:
        if self.enabled:
            self.sent.append((event_type, fields))

    def send(self, event_type: str, **fields: Any) -> None:
        self.sent.append((event_type, fields))

    def flush(self) -> str:
        return "flushed"


def test_listeners_see_events_even_when_the_dispatcher_is_off() -> None:
    inner, seen = Dispatcher(), []
    tee = EventTee(inner, [seen.append, lambda event: 1 / 0])  # a broken listener is contained
    tee.task("task-received", uuid="a", name="t")
    tee.enabled = False  # `tqctl control disable-events` writes through to the real dispatcher
    assert inner.enabled is False
    tee.task("task-started", uuid="a")
    tee.send("worker-heartbeat", active=0)
    assert [e["type"] for e in seen] == ["task-received", "task-started", "worker-heartbeat"]
    assert seen[0]["hostname"] == "w1@h" and seen[0]["name"] == "t"
    assert [t for t, _ in inner.sent] == ["task-received", "worker-heartbeat"]
    assert tee.flush() == "flushed" and tee.hostname == "w1@h"
