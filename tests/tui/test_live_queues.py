"""Queues screen against a real server: depth and the no-consumer warning, peek, purge with the
queue name typed in."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest
from textual.widgets import Button

from tests.integration.harness import ROOT
from tests.tui.conftest import audit_lines, cell, drive, live_app, outcome, press, shown_rows, wait_for, wait_screen
from tqctl.tui.screens.dialogs import ConfirmScreen
from tqctl.tui.screens.queues import PeekScreen, QueuesScreen

pytestmark = pytest.mark.integration


# AMQP: RabbitMQ neither names a queue nobody consumes (no management API) nor shows a message
# without taking it, so neither the orphaned queue nor its peek exists there (test_amqp_console).
def test_peek_and_purge_a_queue_nobody_consumes(broker_url, start_worker, shop, state_dir, redis_client):
    start_worker("-c", "1", "-P", "threads")  # consumes "celery" only
    app = live_app(broker_url, state_dir)
    ids = [shop.urgent.delay().id for _ in range(3)]  # routed to "high"

    async def scenario(pilot):
        await press(pilot, "3")
        screen = await wait_screen(pilot, QueuesScreen)
        table = screen.table
        await wait_for(
            pilot, lambda: cell(table, "high", "depth") == "3", "high with 3 waiting", show=lambda: shown_rows(table)
        )
        assert "⚠ no consumer" in cell(table, "high", "warn")
        assert "✓ ok" in cell(table, "celery", "warn")
        table.select_key("high")
        await press(pilot, "enter")
        peek = await wait_screen(pilot, PeekScreen)
        await wait_for(pilot, lambda: len(peek.table.row_keys) == 3, "three messages peeked")
        assert [cell(peek.table, k, "id") for k in peek.table.row_keys] == [i[:8] for i in ids]  # next out first
        assert all("urgent" in cell(peek.table, k, "name") for k in peek.table.row_keys)
        await press(pilot, "escape")
        await wait_screen(pilot, QueuesScreen)

        table.select_key("high")
        await press(pilot, "P")
        confirm = await wait_screen(pilot, ConfirmScreen)
        assert "delete every waiting message in 'high': 3 messages now" in confirm.action_.scope[0]
        assert app.focused is confirm.query_one("#cancel", Button)
        assert confirm.query_one("#confirm", Button).disabled
        await press(pilot, *"hig", "enter")  # not the name: nothing happens
        assert isinstance(app.screen, ConfirmScreen) and confirm.query_one("#confirm", Button).disabled
        await press(pilot, "h")
        assert not confirm.query_one("#confirm", Button).disabled
        await press(pilot, "enter")
        done = await outcome(pilot, "purge")
        assert done.outcome.summary == "purged 3 messages from 'high'"
        await wait_for(pilot, lambda: cell(table, "high", "depth") == "0", "high empty")

    drive(app, scenario)
    assert redis_client.llen("high") == 0
    [entry] = audit_lines(state_dir)
    assert entry["action"] == "purge" and entry["target"] == "high" and entry["command"] == "tqctl purge high --yes"
    # the copied command runs as a script (no question asked): the queue is empty now, so 0 purged
    redis_client.lpush("high", b"x")
    argv = [sys.executable, "-m", "tqctl", *shlex.split(entry["command"])[1:]]
    done = subprocess.run(
        argv,
        env={**os.environ, "TQCTL_BROKER": broker_url, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert redis_client.llen("high") == 0
