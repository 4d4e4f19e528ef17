"""A console opened after the work is done still shows it: the history workers keep in the broker."""

from __future__ import annotations

import signal
import threading

import pytest

from tests.integration.harness import wait_for as wait_sync
from tests.tui.conftest import drive, live_app, press, wait_for
from tqctl.tui.feed import LiveSource
from tqctl.tui.messages import EventsBatch, FeedStatus
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


def test_a_console_opened_while_a_worker_is_busy_misses_no_task(broker_url, start_worker, shop):
    """The console subscribes, then replays history. A task whose event went out just before the
    subscription must already be in that history, or the console never shows it."""
    sent = shop.app.send_many(shop.add.name, [((i, 1), None) for i in range(5000)])
    ids = [r.id for r in sent]
    start_worker("-c", "4", "-P", "threads")
    wait_sync(lambda: shop.app.AsyncResult(ids[300]).ready(), 60, "the worker to be well under way")

    source = LiveSource(broker_url, batch_interval=0.05, backfill=10_000)
    finished: set[str] = set()
    subscribed = threading.Event()
    stop = threading.Event()

    def post(message: object) -> None:
        if isinstance(message, FeedStatus) and message.connected:
            subscribed.set()
        elif isinstance(message, EventsBatch):
            finished.update(e["uuid"] for e in message.events if e.get("type") == "task-succeeded")

    feed = threading.Thread(target=source.run_events, args=(post, stop.is_set), daemon=True)
    feed.start()
    try:
        wait_sync(subscribed.is_set, 20, "the feed to subscribe")
        assert not shop.app.AsyncResult(ids[-1]).ready(), "the worker finished before the feed subscribed"
        wait_sync(lambda: shop.app.AsyncResult(ids[-1]).ready(), 120, "the last task to run")
        try:
            wait_sync(lambda: finished >= set(ids), 20, "every task, from history or from events")
        except AssertionError as exc:
            missing = [i for i in ids if i not in finished]
            raise AssertionError(f"{exc}: {len(missing)} never seen, first {missing[:3]}") from exc
    finally:
        stop.set()
        feed.join(10)
        source.close()
