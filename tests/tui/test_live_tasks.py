"""The console against real worker processes: tasks flow in, a failure is opened and retried (as
sent and with edited arguments), a queued task is revoked, a running one terminated."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Button

from tests.tui.conftest import cell, drive, live_app, press, row_text, wait_for, wait_screen
from tqctl.tui.app import TqctlApp
from tqctl.tui.screens.dialogs import ChoiceScreen, ConfirmScreen
from tqctl.tui.screens.failures import FailuresScreen, GroupScreen
from tqctl.tui.screens.task_detail import TaskDetailScreen
from tqctl.tui.screens.tasks import TasksScreen
from tqctl.tui.views import failure_groups

# Every test here runs on Redis and on RabbitMQ (history, failures and revokes on the Redis backend).
pytestmark = [pytest.mark.integration, pytest.mark.amqp_too]


def audit_lines(state_dir: Path) -> list[dict]:
    path = state_dir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_tasks_flow_into_the_tail(broker_url, start_worker, shop, state_dir):
    start_worker("-c", "1", "-P", "solo")  # one at a time: finishing order is sending order
    app = live_app(broker_url, state_dir)

    async def scenario(pilot):
        await wait_for(pilot, lambda: app.model.snapshot and app.model.snapshot.replies, "the worker to answer")
        ids = [shop.add.delay(i, i).id for i in range(5)]
        await wait_for(
            pilot, lambda: all((t := app.model.state.task(i)) and t.state == "SUCCESS" for i in ids), "five successes"
        )
        await press(pilot, "4")
        screen = app.screen
        assert isinstance(screen, TasksScreen)
        await wait_for(pilot, lambda: set(ids) <= set(screen.table.row_keys), "the rows")
        assert screen.table.row_keys.index(ids[-1]) < screen.table.row_keys.index(ids[0])  # newest first
        # pause freezes the table while events keep coming
        await press(pilot, "Z")
        more = shop.add.delay(100, 1).id
        await wait_for(pilot, lambda: app.model.state.task(more), "the new task in the model")
        await pilot.pause(0.5)
        assert more not in screen.table.row_keys
        await press(pilot, "Z")
        await wait_for(pilot, lambda: more in screen.table.row_keys, "the table to resume")

    drive(app, scenario)


def test_open_a_failed_task_and_retry_it(broker_url, start_worker, shop, state_dir):
    start_worker("-c", "1", "-P", "threads")
    app = live_app(broker_url, state_dir)
    failed = shop.fail.delay("boom 1").id

    async def scenario(pilot):
        await wait_for(pilot, lambda: (t := app.model.state.task(failed)) and t.state == "FAILURE", "the failure")
        await press(pilot, "4", "s")  # state filter: FAILURE first
        screen = app.screen
        await wait_for(pilot, lambda: screen.table.row_keys == [failed], "only the failure listed")
        await press(pilot, "enter")
        detail = app.screen
        assert isinstance(detail, TaskDetailScreen) and detail.task_id == failed
        await wait_for(pilot, lambda: detail.detail is not None, "the stored message")
        assert detail.detail["message"]["args"] == ["boom 1"]
        await press(pilot, "r")
        done = await wait_for(pilot, lambda: app.last_outcome, "the retry to finish")
        assert done.outcome.ok, done.outcome.summary
        new_id = done.outcome.replies["new_id"]
        await wait_for(
            pilot,
            lambda: (t := app.model.state.task(new_id)) and t.state == "FAILURE",
            "the retried task to run (and fail again)",
        )

    drive(app, scenario)
    [entry] = [e for e in audit_lines(state_dir) if e["action"] == "retry"]
    assert entry["target"] == failed and entry["ok"] and entry["command"] == f"tqctl retry {failed}"


def test_retry_with_arguments_edited_in_the_editor(broker_url, start_worker, shop, state_dir, tmp_path, monkeypatch):
    editor = tmp_path / "edit.py"
    editor.write_text(
        "import json, sys\np = sys.argv[1]\nd = json.load(open(p))\nd['args'] = ['edited']\n"
        "json.dump(d, open(p, 'w'))\n"
    )
    monkeypatch.setenv("EDITOR", f"{sys.executable} {editor}")
    monkeypatch.delenv("VISUAL", raising=False)
    start_worker("-c", "1", "-P", "threads")
    app = live_app(broker_url, state_dir)
    failed = shop.fail.delay("original").id

    async def scenario(pilot):
        await wait_for(pilot, lambda: (t := app.model.state.task(failed)) and t.state == "FAILURE", "the failure")
        app.open_task(failed)
        await pilot.pause()
        await press(pilot, "R")
        confirm = await wait_for(
            pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen, "the confirmation"
        )
        assert '["edited"]' in " ".join(confirm.action_.scope)
        assert app.focused is confirm.query_one("#cancel", Button)
        await press(pilot, "right", "enter")  # move to Send, press it
        done = await wait_for(pilot, lambda: app.last_outcome, "the send")
        new_id = done.outcome.replies["new_id"]
        await wait_for(pilot, lambda: (t := app.model.state.task(new_id)) and t.state == "FAILURE", "the rerun")
        assert "edited" in app.model.state.task(new_id).exception

    drive(app, scenario)


def never_named(app: TqctlApp, ids: set[str]) -> None:
    """The console misses the events naming these tasks, the client's task-sent and the worker's
    task-received, as one that connects while they are on their way does: from the live stream, the
    history replay and the workers' inspect replies alike (each reaches the model through
    ``ClusterState.apply``). Their task-started and task-failed still come."""
    state = app.model.state
    apply = state.apply

    def missed(event: dict[str, Any], now: float | None = None) -> None:
        if not (event.get("type") in ("task-sent", "task-received") and event.get("uuid") in ids):
            apply(event, now)

    state.apply = missed  # type: ignore[method-assign]


def test_retry_tasks_whose_task_received_the_console_missed(broker_url, start_worker, shop, state_dir):
    """Known from task-started and task-failed only, which carry no name: plain r from a failure
    group and from the task list sends each again under its name, the task list learns the name
    from the failure inbox, and the retried tasks run. The view's empty name was passed on: the
    rows said "?" for good and the retries were announced by bare id."""
    start_worker("-c", "1", "-P", "threads")
    # The failure inbox is read at the start and after each action only (a console reads it every
    # third poll): the failures are first known from their events alone, as in that window.
    app = live_app(broker_url, state_dir, slow_every=10**6)
    grouped, listed = str(uuid.uuid4()), str(uuid.uuid4())
    never_named(app, {grouped, listed})

    def finished(task_id: str) -> bool:
        task = app.model.state.task(task_id)
        return task is not None and task.state == "FAILURE"

    def group_of(task_id: str) -> str | None:
        return next((g.fingerprint for g in failure_groups(app.model) if any(m.id == task_id for m in g.members)), None)

    async def retried(pilot: Any, target: str) -> str:
        done = await wait_for(pilot, lambda: (o := app.last_outcome) and o.target == target and o, "the retry")
        assert done.outcome.ok, done.outcome.summary
        assert done.outcome.summary.startswith("tests.apps.shop.fail sent again as "), done.outcome.summary
        new_id = done.outcome.replies["new_id"]
        await wait_for(pilot, lambda: finished(new_id), "the retried task to run (and fail again)")
        return new_id

    async def scenario(pilot):
        await wait_for(pilot, lambda: app.model.snapshot and app.model.snapshot.replies, "the worker to answer")
        shop.fail.apply_async(("unseen 1",), task_id=grouped)
        shop.fail.apply_async(("unseen 2",), task_id=listed)
        await wait_for(pilot, lambda: finished(grouped) and finished(listed), "both failures")
        for task_id in (grouped, listed):
            seen = [entry[0] for entry in app.model.state.task(task_id).timeline]
            assert "task-sent" not in seen and "task-received" not in seen, seen

        # 5 · Failures: the group holding the first one, its row, r
        await press(pilot, "5")
        failures = await wait_screen(pilot, FailuresScreen)
        await wait_for(pilot, lambda: (fp := group_of(grouped)) and failures.table.select_key(fp), "its group's row")
        await press(pilot, "enter")
        members = await wait_screen(pilot, GroupScreen)
        await wait_for(pilot, lambda: members.table.select_key(grouped), "the failure's row")
        await press(pilot, "r")
        rerun = await retried(pilot, grouped)
        assert "unseen 1" in (app.model.state.task(rerun).exception or "")

        # 4 · Tasks: the other one is named on its row (the inbox was read after that retry), r
        await press(pilot, "escape", "4")
        tasks = await wait_screen(pilot, TasksScreen)
        await wait_for(
            pilot,
            lambda: cell(tasks.table, listed, "name") == "tests.apps.shop.fail",
            "the task's name on its row",
            show=lambda: row_text(tasks.table, listed),
        )
        assert tasks.table.select_key(listed)
        await press(pilot, "r")
        rerun = await retried(pilot, listed)
        assert "unseen 2" in (app.model.state.task(rerun).exception or "")
        # the one retried from its group is named too (by the message that retry sent)
        await wait_for(pilot, lambda: cell(tasks.table, grouped, "name") == "tests.apps.shop.fail", "the first's name")

    drive(app, scenario)


def test_revoke_a_queued_task(broker_url, start_worker, shop, state_dir, ledger):
    start_worker("-c", "1", "-P", "solo")
    app = live_app(broker_url, state_dir)

    async def scenario(pilot):
        await wait_for(pilot, lambda: app.model.snapshot and app.model.snapshot.replies, "the worker")
        shop.slow_early.delay(15.0, "blocker")  # "never" still waits when the revoke lands, even on a loaded machine
        queued = shop.record.delay("never").id
        await wait_for(
            pilot,
            lambda: (t := app.model.state.task(queued)) and t.state == "RECEIVED",
            "the queued task (prefetched, waiting)",
        )
        await press(pilot, "4")
        screen = app.screen
        await wait_for(pilot, lambda: screen.table.select_key(queued), "its row")
        await press(pilot, "ctrl+d")
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert app.focused is confirm.query_one("#cancel", Button)
        assert "revoke 1 task" in confirm.action_.scope[0]
        await press(pilot, "tab", "enter")
        done = await wait_for(pilot, lambda: app.last_outcome, "the revoke")
        assert done.outcome.ok
        await wait_for(pilot, lambda: app.model.state.task(queued).state == "REVOKED", "REVOKED", timeout=60)

    drive(app, scenario)
    assert "never" not in ledger.read_text()


def test_terminate_a_running_task_with_a_chosen_signal(broker_url, start_worker, shop, state_dir):
    start_worker("-c", "1")  # prefork: the task runs in a child that can be signalled
    app = live_app(broker_url, state_dir)
    running = shop.slow_early.delay(60, "long").id

    async def scenario(pilot):
        await wait_for(pilot, lambda: (t := app.model.state.task(running)) and t.state == "STARTED", "STARTED")
        app.open_task(running)
        await pilot.pause()
        await press(pilot, "ctrl+k")
        assert isinstance(app.screen, ChoiceScreen)
        await press(pilot, "down", "down", "down", "enter")  # SIGKILL
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen) and confirm.action_.verb == "terminate"
        assert "SIGKILL" in " ".join(confirm.action_.scope)
        assert confirm.action_.command == f"tqctl revoke {running} --terminate --signal SIGKILL --yes"
        await press(pilot, "tab", "enter")
        await wait_for(pilot, lambda: app.model.state.task(running).state in ("REVOKED", "FAILURE"), "the kill")

    drive(app, scenario)
