"""Item 5: a frozen worker runs nothing it no longer owns.

A worker stopped (SIGSTOP) long enough is indistinguishable from a dead one: its messages go
back and run elsewhere. When it wakes it must not run what it held, neither late-ack tasks (they
already ran) nor early-ack ones (early ack promises at most once)."""

from __future__ import annotations

import signal
import time

import pytest

from tests.apps import faults
from tests.faults.kit import (  # noqa: F401
    app,
    broker,
    counter_url,
    held_ids,
    judge,
    send,
    wait_for,
    wait_ran,
    workers,
)

pytestmark = pytest.mark.integration
FROZEN_S = 20.0


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_frozen_worker_runs_nothing_it_no_longer_owns(pool, app, broker, counter_url, workers) -> None:  # noqa: F811
    a = workers(broker.url, "-P", pool, "-c", "1", "--prefetch-multiplier", "20", "-Q", "celery,only_a", name="a")
    blocker = send(app, 1, seconds=5)  # early ack: A's one thread is busy while it prefetches the rest
    wait_for(lambda: faults.runs(counter_url).get(blocker[0]), 30, "the blocker to start")
    late, early = send(app, 8, late=True), send(app, 6)
    held = set(late + early)
    wait_for(lambda: held <= held_ids(broker.url), 30, "worker a to hold all 14 messages")
    a.signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    workers(broker.url, "-P", "threads", "-c", "2", name="b")  # b finds a silent and takes its messages
    runs = wait_ran(counter_url, late + early, 90)
    recovery = time.monotonic() - frozen_at
    time.sleep(max(0.0, FROZEN_S - (time.monotonic() - frozen_at)))  # the freeze itself, not a proof
    a.signal(signal.SIGCONT)
    sentinel = send(app, 1, queue="only_a")  # a runs it after whatever it still had queued
    wait_ran(counter_url, sentinel, 60)
    runs = faults.runs(counter_url)
    result = judge(f"frozen.worker_sigstop_20s.{pool}", blocker + late + early, runs, broker.url, recovery)
    assert runs.get(sentinel[0]) == 1, a.log()[-3000:]
    assert (result.lost, result.stuck, result.duplicated) == (0, 0, 0), {i: runs.get(i) for i in late + early}


def test_claim_fences_and_answers_the_same_when_retried(broker) -> None:  # noqa: F811
    """The fence on the real server: a claim retried after a lost reply still says "ours" (the
    record it removed is remembered), and a record taken back by the reaper says "not ours"."""
    from engine.broker.redis import RedisBroker

    b = RedisBroker(broker.url)
    try:
        b.client.lpush("celery", b"early", b"late")
        got = {d.raw: d.tag for d in b.fetch("o", ["celery"], 2, 0)}
        assert b.claim("o", got[b"early"], take=True) and b.claim("o", got[b"early"], take=True)
        assert b.claim("o", got[b"late"], take=False)
        b.client.zadd("tqctl.owners", {"o": 0})  # silent since 1970: the next reap takes "late" back
        assert b.reap(time.time(), 3.0) == 1
        assert not b.claim("o", got[b"late"], take=False) and not b.claim("o", got[b"late"], take=True)
        assert b.client.lrange("celery", 0, -1) == [b"late"]
    finally:
        b.close()
