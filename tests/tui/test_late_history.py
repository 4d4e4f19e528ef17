"""History replayed into a console already showing live tasks (the event stream reconnected, or on
RabbitMQ its Redis result backend answered again): each task's events once, the older history
below the live tasks. It was applied as news: a task seen live got "succeeded" twice in its
timeline and the replayed tasks jumped above the live ones."""

from __future__ import annotations

from typing import Any

from tqctl.tui.feed import history_events
from tqctl.tui.model import ConsoleModel


def live(uid: str, at: float, *kinds: str) -> list[dict[str, Any]]:
    return [
        {"type": f"task-{kind}", "uuid": uid, "hostname": "w1@h", "timestamp": at + i, "local_received": at + i}
        for i, kind in enumerate(kinds)
    ]


def record(uid: str, at: float, state: str = "SUCCESS") -> dict[str, Any]:
    return {"id": uid, "worker": "w1@h", "name": "shop.add", "state": state, "started": at, "finished": at + 1}


def test_late_history_adds_only_what_is_not_known_below_the_live_tasks() -> None:
    model = ConsoleModel(clock=lambda: 2000.0)
    model.apply_events(live("seen-whole", 1000.0, "received", "started", "succeeded"))
    model.apply_events(live("seen-end", 1010.0, "succeeded"))  # received before the console came
    model.apply_events(live("in-flight", 1020.0, "received", "started"))  # not in the history yet
    # History is newest first: both live tasks, and one finished before the console started.
    history = [record("seen-end", 1008.0), record("seen-whole", 1000.0), record("older", 900.0, "FAILURE")]
    model.apply_events(history_events(history), backfill=True)

    order = [task.uuid for task in model.state.tasks()]
    assert order == ["in-flight", "seen-end", "seen-whole", "older"]
    for uid in ("seen-whole", "seen-end"):
        kinds = [entry[0] for entry in model.state.task(uid).timeline]  # type: ignore[union-attr]
        assert len(kinds) == len(set(kinds)), (uid, kinds)
    seen_end = model.state.task("seen-end")
    assert seen_end is not None and seen_end.name == "shop.add" and seen_end.state == "SUCCESS"  # filled in
    assert [e[0] for e in seen_end.timeline] == ["task-received", "task-started", "task-succeeded"]


def test_the_first_replay_is_applied_as_before() -> None:
    model = ConsoleModel(clock=lambda: 2000.0)
    n = model.apply_events(history_events([record("b", 950.0), record("a", 900.0)]), backfill=True)
    assert n == 6 and [task.uuid for task in model.state.tasks()] == ["b", "a"]
