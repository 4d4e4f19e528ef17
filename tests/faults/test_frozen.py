"""Item 5: a frozen worker runs nothing it no longer owns.

A worker stopped (SIGSTOP) long enough is indistinguishable from a dead one: its messages go
back and run elsewhere. When it wakes it must not run what it held, neither late-ack tasks (they
already ran) nor early-ack ones (early ack promises at most once)."""

from __future__ import annotations

import logging
import signal
import threading
import time

import pytest

from engine import App
from engine.broker.base import LeaseLapsed
from engine.broker.redis import OWNERS, RedisBroker
from engine.protocol import task as protocol
from engine.serialization import accepted_types
from engine.worker.job import Job
from engine.worker.settlement import Settlement
from tests.faults.harness import held_ids, judge, runs, send, wait_settled
from tests.integration.harness import wait_for

pytestmark = pytest.mark.integration
FROZEN_S = 20.0
ACCEPT = accepted_types(["json"])


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_frozen_worker_runs_nothing_it_no_longer_owns(pool, faults, broker_url, counter_url, start_worker) -> None:
    a = start_worker("-P", pool, "-c", "1", "--prefetch-multiplier", "20", "-Q", "celery,only_a", name="a")
    blocker = send(faults.count, 1, 5)  # early ack: A's one thread is busy while it prefetches the rest
    wait_for(lambda: runs(counter_url).get(blocker[0]), 30, "the blocker to start")
    late, early = send(faults.count_late, 8), send(faults.count, 6)
    held = set(late + early)
    wait_for(lambda: held <= held_ids(broker_url, queued=False), 30, "worker a to hold all 14 messages")
    a.signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    start_worker("-P", "threads", "-c", "2", name="b")  # b finds a silent and takes its messages
    wait_settled(late + early, broker_url, counter_url, 90)
    recovery = time.monotonic() - frozen_at
    time.sleep(max(0.0, FROZEN_S - (time.monotonic() - frozen_at)))  # the freeze itself, not a proof
    a.signal(signal.SIGCONT)
    sentinel = send(faults.count, 1, queue="only_a")  # a runs it after whatever it still had queued
    wait_settled(sentinel, broker_url, counter_url, 60)
    counted = runs(counter_url)
    result = judge(f"frozen.worker_sigstop_20s.{pool}", blocker + late + early, broker_url, counter_url, recovery)
    assert counted.get(sentinel[0]) == 1, a.log()[-3000:]
    assert (result.lost, result.dead, result.stuck, result.duplicated) == (0, 0, 0, 0), {
        i: counted.get(i) for i in late + early
    }


def test_a_frozen_workers_child_starts_no_late_ack_task_it_may_lose(
    faults, broker_url, counter_url, start_worker
) -> None:
    """Only the parent is frozen; its child finishes what it runs and goes on to the next job.
    By then the broker has not heard the worker for longer than half the owner timeout, so any
    other worker's reaper may take the message back at any moment, and a late-ack task started
    now would run here and again elsewhere. The child waits at the fence instead; once the
    message is taken back, the resumed worker runs it once, from its queue."""
    a = start_worker("-P", "prefork", "-c", "1", "--prefetch-multiplier", "20", name="a")
    blocker = send(faults.count, 1, 3)  # the child is busy while the parent holds the rest
    wait_for(lambda: runs(counter_url).get(blocker[0]), 30, "the blocker to start")
    late = send(faults.count_late, 8)
    wait_for(lambda: set(late) <= held_ids(broker_url, queued=False), 30, "worker a to hold the 8 messages")
    a.signal(signal.SIGSTOP)
    waits = f"cannot confirm {faults.count_late.name}["
    ran_here = lambda: [i for i in late if runs(counter_url).get(i)]  # noqa: E731
    wait_for(lambda: waits in a.log() or ran_here(), 30, "the child to reach the late-ack tasks")
    ran_while_silent = ran_here()
    b = RedisBroker(broker_url)
    try:
        (owner,) = b.client.zrange(OWNERS, 0, -1)
        b.client.zadd(OWNERS, {owner: 0})  # what another worker's reaper does once a looks dead
        assert b.reap(time.time(), 3.0) >= len(late) - len(ran_while_silent)
    finally:
        b.close()
    a.signal(signal.SIGCONT)  # a beats again, learns it was reaped, and runs them from the queue
    wait_settled(blocker + late, broker_url, counter_url, 60)
    result = judge("frozen.child_at_the_fence", blocker + late, broker_url, counter_url)
    assert ran_while_silent == [], a.log()[-3000:]
    assert (result.lost, result.dead, result.stuck, result.duplicated) == (0, 0, 0, 0), runs(counter_url)


def test_claim_fences_and_answers_the_same_when_retried(broker_url) -> None:
    """The fence on the real server: a claim retried after a lost reply still says "ours" (the
    record it removed is remembered), and a record taken back by the reaper says "not ours"."""
    b = RedisBroker(broker_url)
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


def _silent(b: RedisBroker, owner: str, seconds: float) -> None:
    """As if ``owner`` had not beaten for ``seconds`` by the server's clock."""
    now_s, now_us = b.client.time()
    b.client.zadd(OWNERS, {owner: now_s * 1000 + now_us // 1000 - seconds * 1000})


def test_a_late_ack_waits_while_its_owner_looks_silent(broker_url, caplog) -> None:
    """The fence once the lease has lapsed (a frozen parent whose child goes on running): the
    message is still recorded as ours, but with the owner's heartbeat older than half the owner
    timeout a reaper may take it back while the task runs, and it would run twice. In CI the
    frozen-worker experiment at the top of this file once saw that: 7 late-ack tasks run by the
    frozen worker's child and again by b, whose reap fell between the child's fence and its
    batched ack. So the settlement waits: the task starts once the owner beats again, and is
    dropped once the message is taken back."""
    app = App("fence", broker=broker_url)
    app.conf.tqctl_owner_timeout = 3.0
    late = app.task(acks_late=True, name="fence.late")(lambda: None)
    b = RedisBroker(broker_url)
    settlement = Settlement(app, b, "o", "host")
    caplog.set_level(logging.WARNING, "engine.worker")
    try:
        b.heartbeat("o", time.time())
        for _ in range(3):
            b.publish("celery", protocol.build("fence.late")[1])
        jobs = [Job(d, protocol.decode(d.raw, ACCEPT), late, True, None, None) for d in b.fetch("o", ["celery"], 3, 0)]
        _silent(b, "o", 2.0)
        with pytest.raises(LeaseLapsed):
            b.claim("o", jobs[0].delivery.tag, take=False, fresh=1.5)
        assert b.claim("o", jobs[2].delivery.tag, take=True, fresh=1.5)  # an early ack's take is safe: at most once

        def fence(job: Job, then) -> bool:
            answer: list[bool] = []
            waiting = threading.Thread(target=lambda: answer.append(settlement.claim(job, False, threading.Event())))
            waiting.start()
            wait_for(lambda: f"cannot confirm fence.late[{job.id}]" in caplog.text, 10, "the fence to wait")
            assert not answer  # waiting, not started: the log line comes before the first retry
            then()
            waiting.join(10)
            return answer == [True]

        assert fence(jobs[0], lambda: b.heartbeat("o", time.time()))  # beats again: ours, it starts
        _silent(b, "o", 60.0)
        assert not fence(jobs[1], lambda: b.reap(time.time(), 3.0))  # taken back: it runs elsewhere
        assert b.client.lrange("celery", 0, -1) != []
    finally:
        b.close()
