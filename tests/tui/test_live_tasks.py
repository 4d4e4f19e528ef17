"""The console against real worker processes: tasks flow in, a failure is opened and retried (as
sent and with edited arguments), a queued task is revoked, a running one terminated."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from textual.widgets import Button

from tests.tui.conftest import drive, live_app, press, wait_for
from tqctl.tui.screens.dialogs import ChoiceScreen, ConfirmScreen
from tqctl.tui.screens.task_detail import TaskDetailScreen
from tqctl.tui.screens.tasks import TasksScreen

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
