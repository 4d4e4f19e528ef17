"""A console opened after the work is done still shows it: the history workers keep in the broker."""

from __future__ import annotations

import signal

import pytest

from tests.integration.harness import wait_for as wait_sync
from tests.tui.conftest import drive, live_app, press, wait_for
from tqctl.tui.screens.tasks import TasksScreen

# Every test here runs on Redis and on RabbitMQ (history, failures and revokes on the Redis backend).
pytestmark = [pytest.mark.integration, pytest.mark.amqp_too]


def test_a_console_started_after_1000_tasks_ran_sees_them(broker_url, start_worker, shop, state_dir):
    worker = start_worker("-c", "4", "-P", "threads")
    sent = shop.app.send_many(shop.add.name, [((i, 1), None) for i in range(1000)])
    ids = [r.id for r in sent]
    wait_sync(
        lambda: shop.app.AsyncResult(ids[-1]).ready() and all(r.ready() for r in sent[::50]),
        60,
        "the 1000 tasks to run",
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0  # nothing is running now: whatever the console shows comes from history

    app = live_app(broker_url, state_dir)

    async def scenario(pilot):
        def seen() -> int:
            return sum(1 for i in ids if (t := app.model.state.task(i)) and t.state == "SUCCESS")

        await wait_for(pilot, lambda: seen() == 1000, "all 1000 finished tasks from history", show=seen)
        assert app.model.state.task(ids[7]).result in ("8", 8)
        await press(pilot, "4")
        screen = app.screen
        assert isinstance(screen, TasksScreen)
        await wait_for(pilot, lambda: len(screen.table.row_keys) >= 50, "the tasks table to fill")
        assert set(screen.table.row_keys) <= set(ids)

    drive(app, scenario)
