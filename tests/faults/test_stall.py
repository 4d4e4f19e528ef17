"""Items 3 and 4: a broker that stalls (SIGSTOP of the server) or drops connections mid-reply
leaves nothing stuck and runs nothing twice.

During a stall no worker can write a heartbeat, so on resume every owner looks silent; and a
fetch whose reply never arrives still moved messages into the worker's in-flight record on the
server. The verdict comes from the counter store, which the faults never touch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tests.faults.harness import FaultServer, judge, runs, send, wait_settled
from tests.faults.proxy import Proxy
from tests.integration.harness import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


@pytest.fixture
def broker(make_server: Callable[..., FaultServer]) -> FaultServer:
    """On TCP, so the proxy can sit in front of it."""
    return make_server("broker", tcp=True)


@pytest.mark.parametrize("results", ["apart", "in_broker"])
def test_broker_sigstop_15s_mid_drain(results, faults, broker, broker_url, counter_url, start_worker) -> None:
    # "apart": results on the counter's server, so only ownership is under test; "in_broker": the
    # results go to the stalled server too, as in the report (a store stuck there must not rerun a task).
    backend = ["--backend", counter_url] if results == "apart" else []
    start_worker("-P", "prefork", "-c", "2", *backend, name="p")
    start_worker("-P", "threads", "-c", "2", *backend, name="t")
    ids = send(faults.count_late, 600, 0.02) + send(faults.count, 600, 0.02)
    wait_for(lambda: len(runs(counter_url)) >= 150, 60, "150 tasks to run")
    stalled = time.monotonic()
    broker_stall(broker, 15.0)
    wait_settled(ids, broker_url, counter_url, 90)
    recovery = time.monotonic() - stalled - 15.0
    sentinel = send(faults.count, 4)
    wait_settled(sentinel, broker_url, counter_url, 60)
    result = judge(f"stall.broker_sigstop_15s.results_{results}", ids, broker_url, counter_url, recovery)
    assert (result.lost, result.dead, result.stuck, result.duplicated) == (0, 0, 0, 0)


def test_connections_reset_and_replies_dropped(faults, broker, broker_url, counter_url, start_worker) -> None:
    """Every 2.5 s the proxy swallows replies for a moment, then resets every connection: commands
    (fetch scripts, idle pops) run on the server while their callers only see a reset."""
    proxy = Proxy(("127.0.0.1", broker.port))
    backend = ["--backend", broker_url]  # results straight to the server: this experiment is the broker's
    start_worker("-P", "prefork", "-c", "2", *backend, name="p", url=proxy.url)
    start_worker("-P", "threads", "-c", "2", *backend, name="t", url=proxy.url)
    done = threading.Event()
    chaos = threading.Thread(target=flap, args=(proxy, done), daemon=True)
    ids: list[str] = []
    started = time.monotonic()
    chaos.start()
    try:
        for _ in range(20):  # a steady trickle: busy fetches and idle pops both cross a reset
            ids += send(faults.count_late, 50, 0.01) + send(faults.count, 50, 0.01)
            time.sleep(0.5)
    finally:
        done.set()
        chaos.join()
    wait_settled(ids, broker_url, counter_url, 90)
    recovery = time.monotonic() - started
    sentinel = send(faults.count, 4)
    wait_settled(sentinel, broker_url, counter_url, 60)
    proxy.close()
    result = judge("stall.proxy_resets", ids, broker_url, counter_url, recovery)
    assert (result.lost, result.dead, result.stuck, result.duplicated) == (0, 0, 0, 0)


def flap(proxy: Proxy, done: threading.Event) -> None:
    while not done.wait(2.0):
        proxy.blackhole = True
        time.sleep(0.5)
        proxy.reset()
        proxy.blackhole = False


def broker_stall(broker: FaultServer, seconds: float) -> None:
    broker.freeze()
    try:
        time.sleep(seconds)  # the fault itself
    finally:
        broker.thaw()


def test_server_stall_is_not_counted_against_owners(broker) -> None:
    """The liveness judgement alone, on the real server: an owner that beat just before a 5 s stall
    (longer than its 3 s timeout) is still alive after it; one that stays silent is reaped."""
    from engine.broker.redis import INFLIGHT, RedisBroker

    live, judge_ = RedisBroker(broker.url), RedisBroker(broker.url)
    try:
        live.client.hset(INFLIGHT + "live", "1.1", b"celery\x1f{}")
        live.heartbeat("live", time.time())
        broker_stall(broker, 5.0)
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
