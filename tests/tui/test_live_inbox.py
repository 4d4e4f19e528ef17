"""Failure inbox and dead letters against real workers: retry a group at a chosen rate, delete a
group, open a group; requeue and delete dead letters."""

from __future__ import annotations

import pytest
from textual.widgets import Button

from engine.history import History
from tests.tui.conftest import (
    audit_lines,
    cell,
    drive,
    live_app,
    outcome,
    press,
    push_raw,
    shown_rows,
    wait_for,
    wait_screen,
)
from tqctl.tui.screens.dead import DeadLettersScreen
from tqctl.tui.screens.dialogs import ConfirmScreen, PromptScreen
from tqctl.tui.screens.failures import FailuresScreen, GroupScreen

# Every test here runs on Redis and on RabbitMQ (history, failures and revokes on the Redis backend).
pytestmark = [pytest.mark.integration, pytest.mark.amqp_too]


def test_failure_group_retry_at_a_rate_then_delete(broker_url, start_worker, shop, state_dir, redis_client):
    start_worker("-c", "2", "-P", "threads")
    app = live_app(broker_url, state_dir)
    ids = [shop.fail.delay(f"card {n} declined").id for n in range(3)]
    shop.add.delay(1, 2)

    async def scenario(pilot):
        await press(pilot, "5")
        screen = await wait_screen(pilot, FailuresScreen)
        table = screen.table
        # Until the first history poll, failures seen only as events may be nameless ("?"): the
        # console can start after the workers sent task-received. Wait for the stored group.
        await wait_for(
            pilot,
            lambda: (
                len(table.row_keys) == 1
                and cell(table, table.row_keys[0], "open") == "✗ 3"
                and cell(table, table.row_keys[0], "name") != "?"
            ),
            "one named group of 3 (numbers ignored)",
            show=lambda: shown_rows(table),
        )
        fp = table.row_keys[0]
        assert "shop.fail" in cell(table, fp, "name") and "card" in cell(table, fp, "sample")

        await press(pilot, "enter")  # the group's members, each retryable as sent
        group = await wait_screen(pilot, GroupScreen)
        await wait_for(pilot, lambda: sorted(group.table.row_keys) == sorted(ids), "the three members")
        await wait_for(
            pilot,
            lambda: all(cell(group.table, i, "stored") == "✓ stored" for i in ids),
            "each kept with its original message (retryable as sent)",
        )
        await press(pilot, "escape")
        await wait_screen(pilot, FailuresScreen)

        table.select_key(fp)
        await press(pilot, "r")
        prompt = await wait_screen(pilot, PromptScreen)
        assert prompt.query_one("#value").value == "5"
        prompt.query_one("#value").value = ""
        await press(pilot, *"abc", "enter")  # refused: not a rate
        assert isinstance(app.screen, PromptScreen)
        prompt.query_one("#value").value = ""
        await press(pilot, *"20", "enter")
        confirm = await wait_screen(pilot, ConfirmScreen)
        assert confirm.action_.scope[0].startswith("republish 3 stored failures of tests.apps.shop.fail ValueError")
        assert confirm.action_.scope[0].endswith("at 20/s (under a second)")
        assert app.focused is confirm.query_one("#cancel", Button)
        await press(pilot, "tab", "enter")
        done = await outcome(pilot, "retry_group")
        assert done.outcome.summary.startswith("retried 3/3")
        new_ids = list(done.outcome.replies["retried"].values())
        await wait_for(
            pilot,
            lambda: all((t := app.model.state.task(i)) and t.state == "FAILURE" for i in new_ids),
            "the three retries to run (and fail again)",
        )
        await wait_for(
            pilot,
            lambda: fp in table.row_keys and cell(table, fp, "open") == "✗ 3",
            "the group open again with the new failures",
            show=lambda: shown_rows(table),
        )
        # The retries' own failures, not the three retried ones a stale poll still lists as
        # stored (they left the inbox when retried): deleting those would delete nothing.
        await wait_for(
            pilot,
            lambda: (
                sorted(m.id for g in screen._groups if g.fingerprint == fp for m in g.members if m.stored)
                == sorted(new_ids)
            ),
            "the three new failures stored",
        )

        app.last_outcome = None
        table.select_key(fp)
        await press(pilot, "ctrl+d")
        confirm = await wait_screen(pilot, ConfirmScreen)
        assert confirm.action_.scope[0].startswith("remove 3 failures of tests.apps.shop.fail")
        assert app.focused is confirm.query_one("#cancel", Button)
        await press(pilot, "tab", "enter")
        await outcome(pilot, "delete_failures")
        await wait_for(
            pilot,
            lambda: not any(cell(table, k, "open").endswith(" 3") for k in table.row_keys),
            "the group emptied",
            show=lambda: shown_rows(table),
        )

    drive(app, scenario)
    assert History(redis_client).failures(100) == []
    assert [e["action"] for e in audit_lines(state_dir)] == ["retry_group", "delete_failures"]


def test_dead_letters_requeue_and_delete(broker_url, transport, start_worker, state_dir):
    start_worker("-c", "1", "-P", "threads")
    app = live_app(broker_url, state_dir)
    push_raw(broker_url, "celery", b"this is not json")
    # On Redis the whole envelope is unreadable; on RabbitMQ the frame is fine and its body is not.
    reason = "invalid_json" if transport == "redis" else "bad_body"

    async def scenario(pilot):
        await press(pilot, "7")
        screen = await wait_screen(pilot, DeadLettersScreen)
        table = screen.table
        first = await wait_for(pilot, lambda: table.row_keys and table.row_keys[0], "the dead letter")
        assert cell(table, first, "reason") == f"✗ {reason}" and cell(table, first, "queue") == "celery"

        await press(pilot, "r")
        confirm = await wait_screen(pilot, ConfirmScreen)
        assert confirm.action_.scope[0] == f"put back on their queues: 1 dead letter (1 × {reason})"
        assert app.focused is confirm.query_one("#cancel", Button)
        await press(pilot, "tab", "enter")
        done = await outcome(pilot, "dead_requeue")
        assert done.outcome.summary == "requeued 1/1 dead letters"
        # back on its queue, the worker refuses it again: a new letter replaces the old one
        second = await wait_for(
            pilot,
            lambda: table.row_keys and table.row_keys[0] != first and table.row_keys[0],
            "the message dead-lettered again",
        )
        assert first not in table.row_keys

        app.last_outcome = None
        table.select_key(second)
        await press(pilot, "ctrl+d")
        confirm = await wait_screen(pilot, ConfirmScreen)
        assert confirm.action_.scope[0] == f"delete for good: 1 dead letter (1 × {reason})"
        assert app.focused is confirm.query_one("#cancel", Button)
        await press(pilot, "tab", "enter")
        await outcome(pilot, "dead_delete")
        await wait_for(pilot, lambda: not table.row_keys, "no dead letters left")
        assert "Dead letters 0" in str(screen.query_one("#status").render())

    drive(app, scenario)
    assert [e["action"] for e in audit_lines(state_dir)] == ["dead_requeue", "dead_delete"]
