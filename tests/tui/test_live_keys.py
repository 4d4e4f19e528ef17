"""The smaller keys against real workers: marks and a bulk revoke, follow, copy id, detail tabs and
raw JSON, overview → queue, a single failure retried from its group, a dead letter shown."""

from __future__ import annotations

import json

import pytest
from textual.widgets import Button

from tests.tui.conftest import cell, drive, live_app, outcome, press, push_raw, texts, wait_for, wait_screen
from tqctl.tui.screens.dead import DeadLettersScreen
from tqctl.tui.screens.dialogs import ConfirmScreen, TextScreen
from tqctl.tui.screens.failures import FailuresScreen, GroupScreen
from tqctl.tui.screens.queues import QueuesScreen
from tqctl.tui.screens.task_detail import TaskDetailScreen
from tqctl.tui.screens.tasks import TasksScreen

# Every test here runs on Redis and on RabbitMQ (history, failures and revokes on the Redis backend).
pytestmark = [pytest.mark.integration, pytest.mark.amqp_too]


def test_marks_bulk_revoke_follow_copy_and_detail_tabs(broker_url, start_worker, shop, state_dir, ledger):
    start_worker("-c", "1", "-P", "solo")
    app = live_app(broker_url, state_dir)

    async def scenario(pilot):
        await wait_for(pilot, lambda: app.model.snapshot and app.model.snapshot.replies, "the worker")
        shop.slow_early.delay(15.0, "blocker")  # the two stay waiting until the revoke, even on a loaded machine
        waiting = [shop.record.delay(f"never-{n}").id for n in range(2)]
        await press(pilot, "4")
        tasks = await wait_screen(pilot, TasksScreen)
        table = tasks.table
        await wait_for(pilot, lambda: all(cell(table, i, "state") == "○ RECEIVED" for i in waiting), "two waiting")

        await press(pilot, "Z")  # pause: rows stay put while marking
        for task_id in waiting:
            table.select_key(task_id)
            await press(pilot, "space")
        assert "2 marked" in str(tasks.query_one("#status").render())
        await press(pilot, "ctrl+d")
        confirm = await wait_screen(pilot, ConfirmScreen)
        assert confirm.action_.title == "Revoke 2 tasks"
        assert "2 × tests.apps.shop.record (2 waiting, 0 running, 0 already finished)" in confirm.action_.scope[0]
        assert app.focused is confirm.query_one("#cancel", Button)
        await press(pilot, "tab", "enter")
        await outcome(pilot, "revoke")
        await press(pilot, "U", "Z")  # unmark, resume
        await wait_for(
            pilot, lambda: all(cell(table, i, "state") == "⊘ REVOKED" for i in waiting), "both revoked", timeout=60
        )

        # F follows a row: the cursor stays on it while newer tasks push it down
        table.select_key(waiting[0])
        await press(pilot, "F")
        assert f"following {waiting[0][:8]}" in str(tasks.query_one("#status").render())
        newer = [shop.add.delay(n, n).id for n in range(3)]
        await wait_for(pilot, lambda: all(i in table.row_keys for i in newer), "newer rows")
        assert table.current_key == waiting[0]
        await press(pilot, "F")

        # without F too: a cursor moved off the top row stays on its task; on the top row it tails
        table.select_key(waiting[0])
        assert table.cursor_row > 0
        later = [shop.add.delay(n, 1).id for n in range(3)]
        await wait_for(pilot, lambda: all(i in table.row_keys for i in later), "later rows")
        assert table.current_key == waiting[0]
        table.move_cursor(row=0)
        newest = shop.add.delay(7, 7).id
        await wait_for(pilot, lambda: newest in table.row_keys, "the newest row")
        assert (table.cursor_row, table.current_key) == (0, table.row_keys[0])
        table.select_key(waiting[0])

        await press(pilot, "c")
        assert app.clipboard == waiting[0]

        await press(pilot, "enter")
        detail = await wait_screen(pilot, TaskDetailScreen)
        tabs = detail.query_one("#tabs")
        assert tabs.active == "args"
        await press(pilot, "right_square_bracket")
        assert tabs.active == "result"
        await press(pilot, "right_square_bracket")
        assert tabs.active == "timeline"
        await wait_for(
            pilot,
            lambda: "task-revoked" in str(detail.query_one("#timeline-body").render()),
            "the revoke in the timeline",
        )
        await press(pilot, "y")
        raw = await wait_screen(pilot, TextScreen)
        assert json.loads(raw.body)["events"]["uuid"] == waiting[0]
        await press(pilot, "escape", "escape")
        assert app.screen is tasks

    drive(app, scenario)
    assert "never" not in ledger.read_text()


def test_overview_queue_group_member_retry_and_dead_letter(broker_url, transport, start_worker, shop, state_dir):
    start_worker("-c", "1", "-P", "threads")
    app = live_app(broker_url, state_dir)
    failed = shop.fail.delay("only one").id
    shop.urgent.delay()  # waits in "high": nobody consumes it
    push_raw(broker_url, "celery", b"\xff\xfe not even text")
    # RabbitMQ names its queues only through the management API: the console lists the ones
    # workers consume, so there the overview shows "celery", not the orphaned "high".
    queue = "high" if transport == "redis" else "celery"

    async def scenario(pilot):
        queues = app.screen.query_one("#queues")
        await wait_for(pilot, lambda: queue in queues.row_keys, f"the {queue} queue on the overview")
        queues.focus()
        queues.select_key(queue)
        await press(pilot, "enter")
        screen = await wait_screen(pilot, QueuesScreen)
        await wait_for(pilot, lambda: screen.table.current_key == queue, "the same queue selected")

        await press(pilot, "5")
        failures = await wait_screen(pilot, FailuresScreen)
        await wait_for(pilot, lambda: failures.table.row_keys, "the group")
        await press(pilot, "enter")
        group = await wait_screen(pilot, GroupScreen)
        await wait_for(pilot, lambda: cell(group.table, failed, "stored") == "✓ stored", "the stored failure")
        group.table.select_key(failed)
        await press(pilot, "r")  # one failure, as sent: no question
        done = await outcome(pilot, "retry")
        assert done.outcome.replies["new_id"] != failed
        await press(pilot, "escape")

        await press(pilot, "7")
        dead = await wait_screen(pilot, DeadLettersScreen)
        await wait_for(pilot, lambda: dead.table.row_keys, "the dead letter")
        await press(pilot, "enter")
        shown = await wait_screen(pilot, TextScreen)
        reason = "undecodable" if transport == "redis" else "bad_body"
        assert f"reason   {reason}: " in shown.body and " UTC (" in shown.body  # a time a person reads
        # the raw message, read from the broker when opened (the poll's list has no bytes)
        await wait_for(pilot, lambda: "not even text" in shown.body, "the raw message", show=lambda: shown.body)
        # as received on Redis; on RabbitMQ the letter keeps an envelope, its body shown decoded
        assert "raw message (not JSON; as received)" in shown.body or "body (base64-decoded)" in shown.body
        assert "dead letter" in texts(shown)

    drive(app, scenario)
