"""The console's task screen for a task no worker took: PENDING alone (as Celery and Flower show it)
looked the same for one still queued and one purged. It now says where the task waits, and after
`tqctl purge` that it is in no queue. A real Redis and CLI; the console driven with Pilot."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import ROOT
from tests.tui.conftest import drive, live_app, press, wait_for, wait_screen
from tqctl.tui.screens.task_detail import TaskDetailScreen
from tqctl.tui.screens.tasks import TasksScreen

pytestmark = pytest.mark.integration


@pytest.fixture
def client(broker_url: str, backend_url: str) -> Iterator[Any]:
    from engine import App

    app = App("client", broker=broker_url, backend=backend_url)
    app.conf.task_send_sent_event = True  # the console hears of the task before any worker does
    try:
        yield app
    finally:
        app.close()


def summary(screen: Any) -> str:
    return str(screen.query_one("#summary").render())


def test_the_task_screen_says_where_a_waiting_task_is_and_that_a_purged_one_is_nowhere(
    broker_url: str, client: Any, state_dir: Path
) -> None:
    app = live_app(broker_url, state_dir)
    sent: list[str] = []

    async def open_task(pilot: Any) -> Any:
        await press(pilot, "4")
        tasks = await wait_screen(pilot, TasksScreen)
        # Sent once the console listens, so that it hears the task-sent event: until one shows
        # (the event subscription has no signal of its own to wait for), each a task more in "parked".
        while not sent or sent[-1] not in tasks.table.row_keys:
            assert len(sent) < 30, "no task-sent event heard"
            sent.append(client.send_task("tests.apps.shop.add", [1, 2], queue="parked").id)
            for _ in range(10):
                await pilot.pause(0.1)
                if sent[-1] in tasks.table.row_keys:
                    break
        tasks.table.move_cursor(row=tasks.table.get_row_index(sent[-1]))
        await press(pilot, "enter")
        return await wait_screen(pilot, TaskDetailScreen)

    async def scenario(pilot: Any) -> None:
        detail = await open_task(pilot)
        line = await wait_for(pilot, lambda: "waiting in" in (t := summary(detail)) and t, "its place", 30)
        assert f"waiting in parked: position {len(sent)} of {len(sent)}" in line, line

        env = {**os.environ, "TQCTL_BROKER": broker_url, "PYTHONPATH": str(ROOT)}
        purge = [sys.executable, "-m", "tqctl", "purge", "parked", "--yes"]
        assert subprocess.run(purge, cwd=ROOT, env=env, capture_output=True, timeout=60).returncode == 0
        await press(pilot, "escape", "escape")
        detail = await open_task(pilot)
        line = await wait_for(pilot, lambda: "in no queue" in (t := summary(detail)) and t, "nowhere", 30)
        assert "(all read), not in the delayed set (purged" in line, line

    drive(app, scenario)
