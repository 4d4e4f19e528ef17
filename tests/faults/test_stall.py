"""Items 3 and 4: a broker that stalls (SIGSTOP of the server) or drops connections mid-reply
leaves nothing stuck and runs nothing twice.

During a stall no worker can write a heartbeat, so on resume every owner looks silent; and a
fetch whose reply never arrives still moved messages into the worker's in-flight record on the
server. The verdict comes from the counter store, which the faults never touch."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.apps import faults
from tests.faults.kit import (  # noqa: F401
    Proxy,
    app,
    broker,
    broker_address,
    counter_url,
    judge,
    send,
    wait_ran,
    workers,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


@pytest.mark.parametrize("results", ["apart", "in_broker"])
def test_broker_sigstop_15s_mid_drain(results, app, broker, counter_url, workers) -> None:  # noqa: F811
    # "apart": results on the counter's server, so only ownership is under test; "in_broker": the
    # results go to the stalled server too, as in the report (a store stuck there must not rerun a task).
    backend = ["--backend", counter_url] if results == "apart" else []
    workers(broker.url, "-P", "prefork", "-c", "2", *backend, name="p")
    workers(broker.url, "-P", "threads", "-c", "2", *backend, name="t")
    ids = send(app, 600, late=True, seconds=0.02) + send(app, 600, seconds=0.02)
    wait_for_some(counter_url, 150)
    stalled = time.monotonic()
    broker_stall(broker.pid, 15.0)
    wait_ran(counter_url, ids, 90)
    recovery = time.monotonic() - stalled - 15.0
    sentinel = send(app, 4)
    wait_ran(counter_url, sentinel, 60)
    result = judge(f"stall.broker_sigstop_15s.results_{results}", ids, faults.runs(counter_url), broker.url, recovery)
    assert (result.lost, result.stuck, result.duplicated) == (0, 0, 0)


def test_connections_reset_and_replies_dropped(app, broker, counter_url, workers) -> None:  # noqa: F811
    """Every 2.5 s the proxy swallows replies for a moment, then resets every connection: commands
    (fetch scripts, idle pops) run on the server while their callers only see a reset."""
    proxy = Proxy(broker_address(broker.url))
    backend = ["--backend", broker.url]  # results straight to the server: this experiment is the broker's
    workers(proxy.url, "-P", "prefork", "-c", "2", *backend, name="p")
    workers(proxy.url, "-P", "threads", "-c", "2", *backend, name="t")
    done = threading.Event()
    chaos = threading.Thread(target=flap, args=(proxy, done), daemon=True)
    ids: list[str] = []
    started = time.monotonic()
    chaos.start()
    try:
        for _ in range(20):  # a steady trickle: busy fetches and idle pops both cross a reset
            ids += send(app, 50, late=True, seconds=0.01) + send(app, 50, seconds=0.01)
            time.sleep(0.5)
    finally:
        done.set()
        chaos.join()
    wait_ran(counter_url, ids, 90)
    recovery = time.monotonic() - started
    sentinel = send(app, 4)
    wait_ran(counter_url, sentinel, 60)
    proxy.close()
    result = judge("stall.proxy_resets", ids, faults.runs(counter_url), broker.url, recovery)
    assert (result.lost, result.stuck, result.duplicated) == (0, 0, 0)


def flap(proxy: Proxy, done: threading.Event) -> None:
    while not done.wait(2.0):
        proxy.blackhole = True
        time.sleep(0.5)
        proxy.reset()
        proxy.blackhole = False


def broker_stall(pid: int, seconds: float) -> None:
    import os

    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)  # the fault itself
    finally:
        os.kill(pid, signal.SIGCONT)


def wait_for_some(url: str, n: int) -> None:
    from tests.integration.harness import wait_for

    wait_for(lambda: len(faults.runs(url)) >= n, 60, f"{n} tasks to run")


def test_server_stall_is_not_counted_against_owners(broker) -> None:  # noqa: F811
    """The liveness judgement alone, on the real server: an owner that beat just before a 5 s stall
    (longer than its 3 s timeout) is still alive after it; one that stays silent is reaped."""
    from engine.broker.redis import INFLIGHT, RedisBroker

    live, judge_ = RedisBroker(broker.url), RedisBroker(broker.url)
    try:
        live.client.hset(INFLIGHT + "live", "1.1", b"celery\x1f{}")
        live.heartbeat("live", time.time())
        broker_stall(broker.pid, 5.0)
        assert judge_.reap(time.time(), 3.0) == 0  # the stall is the server's, not the owner's
        assert live.client.hlen(INFLIGHT + "live") == 1
        deadline = time.monotonic() + 30
        while judge_.reap(time.time(), 3.0) == 0 and time.monotonic() < deadline:
            judge_.heartbeat("judge", time.time())  # only the judge beats now
            time.sleep(0.2)
        assert live.client.hlen(INFLIGHT + "live") == 0 and live.client.llen("celery") == 1
    finally:
        live.close()
        judge_.close()
