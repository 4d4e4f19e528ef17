"""Item 10 (idle fetch): a worker that dies between the blocking pop and recording the message as
its own must not lose it. Freezing the worker while it waits on an empty queue, publishing, then
killing it puts the server-side pop exactly in that window, with no timing luck."""

from __future__ import annotations

import signal
import time

import pytest

from engine.bundled import client_for
from tests.faults.harness import judge, send, wait_settled
from tests.integration.harness import wait_for

pytestmark = pytest.mark.integration


def blocked_clients(url: str) -> int:
    client = client_for(url)
    try:
        return sum(1 for c in client.client_list() if "b" in c.get("flags", ""))
    finally:
        client.close()


def test_worker_killed_after_the_idle_pop_loses_nothing(faults, broker_url, counter_url, start_worker) -> None:
    a = start_worker("-P", "threads", "-c", "1", name="a")
    wait_for(lambda: blocked_clients(broker_url) >= 1, 30, "worker a to wait on the empty queue")
    a.signal(signal.SIGSTOP)
    ids = send(faults.count_late, 1)
    client = client_for(broker_url)
    wait_for(lambda: client.llen("celery") == 0, 30, "the server to hand the message to the frozen worker")
    client.close()
    a.signal(signal.SIGKILL)
    a.proc.wait(10)
    killed = time.monotonic()
    start_worker("-P", "threads", "-c", "1", name="b")
    wait_settled(ids, broker_url, counter_url, 60)
    result = judge("stall.idle_pop_then_sigkill", ids, broker_url, counter_url, time.monotonic() - killed)
    assert (result.lost, result.dead, result.stuck, result.duplicated) == (0, 0, 0, 0)
