"""A task whose task-sent and task-received the console missed (it connected while the task was on
its way) is known from task-started and task-failed, which carry no name. The model takes the name
from what else carries it, and a plain retry names the task by its stored message, or sends nothing.
(The console driven against real workers: tests/tui/test_live_tasks.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from tqctl.tui.actions import ActionContext
from tqctl.tui.adapter import ActionError
from tqctl.tui.model import ConsoleModel
from tqctl.tui.snapshot import ClusterSnapshot, WorkerReply
from tqctl.tui.verbs import retry
from tqctl.tui.views import failure_groups

CONTEXT = ActionContext(progress=lambda done, total: None, cancelled=lambda: False)


def seen_from(model: ConsoleModel, uid: str, *kinds: str, name: str | None = None, at: float = 1000.0) -> None:
    model.apply_events(
        {
            "type": f"task-{kind}",
            "uuid": uid,
            "hostname": "w1@h",
            "timestamp": at + i,
            "local_received": at + i,
            **({"name": name} if kind == "received" else {}),
        }
        for i, kind in enumerate(kinds)
    )


def test_the_failure_inbox_names_a_failure_known_from_its_events() -> None:
    model = ConsoleModel(clock=lambda: 2000.0)
    seen_from(model, "late", "started", "failed")
    seen_from(model, "named", "received", "failed", name="shop.add")
    assert model.state.task("late").name is None  # type: ignore[union-attr]
    stored = ({"id": "late", "name": "shop.fail"}, {"id": "named", "name": "other.name"}, {"id": "gone", "name": "x"})
    model.apply_snapshot(ClusterSnapshot(taken_at=2000.0, failures=stored, failure_groups=()))
    assert model.state.task("late").name == "shop.fail"  # type: ignore[union-attr]
    assert model.state.task("named").name == "shop.add"  # type: ignore[union-attr]  # not overwritten
    assert model.state.task("gone") is None  # nothing is made up for a task the view does not hold


def test_an_inspect_reply_names_a_running_task_known_from_task_started() -> None:
    model = ConsoleModel(clock=lambda: 2000.0)
    seen_from(model, "running", "started")
    reply = WorkerReply("w1@h", active=[{"id": "running", "name": "shop.slow", "args": [1], "kwargs": {}}])
    model.apply_snapshot(ClusterSnapshot(taken_at=2000.0, replies={"w1@h": reply}))
    task = model.state.task("running")
    assert task is not None and task.name == "shop.slow" and task.state == "STARTED"


def test_a_named_failure_is_grouped_with_its_stored_kind() -> None:
    model = ConsoleModel(clock=lambda: 2000.0)
    seen_from(model, "late", "started", "failed")
    model.learn_names([("late", "shop.fail")])
    [group] = failure_groups(model)
    assert group.name == "shop.fail" and [m.name for m in group.members] == ["shop.fail"]


class Adapter:
    def __init__(self, stored: dict[str, Any] | None) -> None:
        self.stored = stored
        self.sent: list[str] = []

    def stored_arguments(self, task_id: str) -> dict[str, Any] | None:
        return self.stored

    def retry(self, task_id: str) -> str:
        self.sent.append(task_id)
        return "new-id"


def test_a_retry_without_the_views_name_is_named_by_the_stored_message() -> None:
    adapter = Adapter({"args": [], "kwargs": {}, "queue": "celery", "name": "shop.fail"})
    outcome = retry("late", None, None).run(adapter, CONTEXT)
    assert adapter.sent == ["late"]
    assert outcome.summary == "shop.fail sent again as new-id"
    assert outcome.replies == {"new_id": "new-id", "name": "shop.fail"}


def test_a_retry_with_no_name_anywhere_sends_nothing_and_says_why() -> None:
    adapter = Adapter(None)
    with pytest.raises(ActionError, match="^no stored message for late "):
        retry("late", None, None).run(adapter, CONTEXT)
    assert adapter.sent == []
