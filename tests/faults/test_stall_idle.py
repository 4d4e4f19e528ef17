"""Item 10 (idle fetch): a worker that dies between the blocking pop and recording the message as
its own must not lose it. Freezing the worker while it waits on an empty queue, publishing, then
killing it puts the server-side pop exactly in that window, with no timing luck."""

from __future__ import annotations

import signal
import time

import pytest

from engine.bundled import client_for
from tests.faults.kit import app, broker, counter_url, judge, send, wait_for, wait_ran, workers  # noqa: F401

pytestmark = pytest.mark.integration


def blocked_clients(url: str) -> int:
    client = client_for(url)
    try:
        return sum(1 for c in client.client_list() if "b" in c.get("flags", ""))
    finally:
        client.close()


def test_worker_killed_after_the_idle_pop_loses_nothing(app, broker, counter_url, workers) -> None:  # noqa: F811
    a = workers(broker.url, "-P", "threads", "-c", "1", name="a")
    wait_for(lambda: blocked_clients(broker.url) >= 1, 30, "worker a to wait on the empty queue")
    a.signal(signal.SIGSTOP)
    ids = send(app, 1, late=True)
    client = client_for(broker.url)
    wait_for(lambda: client.llen("celery") == 0, 30, "the server to hand the message to the frozen worker")
    client.close()
    a.signal(signal.SIGKILL)
    a.proc.wait(10)
    killed = time.monotonic()
    workers(broker.url, "-P", "threads", "-c", "1", name="b")
    runs = wait_ran(counter_url, ids, 60)
    result = judge("stall.idle_pop_then_sigkill", ids, runs, broker.url, time.monotonic() - killed)
    assert (result.lost, result.stuck, result.duplicated) == (0, 0, 0)
