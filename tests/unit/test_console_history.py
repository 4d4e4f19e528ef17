"""The console rebuilds a task's events from the worker's history record when it missed them live."""

from __future__ import annotations

from tqctl.tui.feed import history_events

BASE = {"id": "t1", "name": "shop.add", "worker": "w1@h", "queue": "celery", "finished": 1000.0}


def types(record: dict[str, object]) -> list[str]:
    return [event["type"] for event in history_events([record])]


def test_a_task_revoked_before_it_ran_has_no_started_event() -> None:
    """Its timeline would otherwise say it started, on a worker that never ran it."""
    assert types({**BASE, "state": "REVOKED", "started": None}) == ["task-received", "task-revoked"]


def test_a_terminated_task_started_before_it_was_revoked() -> None:
    record = {**BASE, "state": "REVOKED", "started": 990.0, "terminated": True}
    assert types(record) == ["task-received", "task-started", "task-revoked"]


def test_a_finished_run_keeps_its_start() -> None:
    assert types({**BASE, "state": "SUCCESS", "started": 990.0}) == ["task-received", "task-started", "task-succeeded"]
