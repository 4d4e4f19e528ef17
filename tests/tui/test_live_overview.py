"""Overview against a real server: the queue a worker consumes stays listed while it is idle.

An empty queue has no key in Redis; the console knows it from the binding the worker declared, or
from the worker's ``active_queues`` answer. When the broker lost the binding (a Redis restarted
without persistence, a FLUSHDB) and a poll misses the worker's answer (a busy or paused worker, a
slow machine), the queue used to vanish from the Overview while its worker stayed listed.
"""

from __future__ import annotations

import signal
import socket
import time

import pytest

from tests.tui.conftest import cell, drive, live_app, shown_rows, wait_for
from tqctl.tui.screens.overview import OverviewScreen

# Every test here runs on Redis and on RabbitMQ (history, failures and revokes on the Redis backend).
pytestmark = [pytest.mark.integration, pytest.mark.amqp_too]
W1 = f"w1@{socket.gethostname()}"


def test_an_idle_queue_stays_listed_while_its_worker_is(broker_url, transport, start_worker, state_dir, redis_client):
    worker = start_worker("-c", "1", "-P", "threads", "-Q", "idle", name="w1")
    app = live_app(broker_url, state_dir)

    async def scenario(pilot):
        screen = await wait_for(pilot, lambda: isinstance(app.screen, OverviewScreen) and app.screen, "the Overview")
        queues, workers = screen.query_one("#queues"), screen.query_one("#workers")
        # consumed (its answer) and heard (its heartbeats): the worker is listed from events too
        await wait_for(
            pilot,
            lambda: cell(queues, "idle", "cons") == "1" and W1 in app.model.state.workers,
            "idle with its consumer, and the worker's heartbeat",
            show=lambda: shown_rows(queues),
        )
        assert cell(queues, "idle", "depth") == "0" and "✓ ok" in cell(queues, "idle", "warn")

        if transport == "redis":  # the broker lost its keys (on RabbitMQ only the worker's answer names it)
            redis_client.delete("_kombu.binding.idle", "_kombu.binding_permanent.idle")
        worker.signal(signal.SIGSTOP)  # and the worker cannot answer the next polls
        paused = time.time()
        try:

            def unanswered() -> bool:
                snap = app.model.snapshot
                return snap is not None and snap.taken_at > paused + 0.5 and W1 not in snap.replies

            await wait_for(pilot, unanswered, "a poll without the worker's answer")
            await wait_for(
                pilot,
                lambda: unanswered() and W1 in workers.row_keys and cell(queues, "idle", "depth"),
                "idle still listed beside its worker",
                show=lambda: (shown_rows(queues), shown_rows(workers)),
            )
            assert cell(queues, "idle", "depth") == "0"
        finally:
            worker.signal(signal.SIGCONT)
        await wait_for(pilot, lambda: W1 in app.model.snapshot.replies, "the worker to answer again")
        assert cell(queues, "idle", "cons") == "1"

    drive(app, scenario)
