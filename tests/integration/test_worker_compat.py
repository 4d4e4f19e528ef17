"""A Celery 5.7 client feeding our worker gets what a Celery 5.7 worker gives it (issue 12, mode a).

Each test runs twice on one fresh server: against our worker and against a real Celery worker
(both ``-P prefork -c 1``) running the very same task functions (tests/apps/compat_worker.py and
tests/apps/celery_compat_worker.py). The assertions are the behaviour Celery's own integration suite
checks in ``t/integration/test_tasks.py``: retries that switch between positional and keyword
arguments, a retry keeping the message's priority, ``replaced_task_nesting`` across replacements,
revokes marked in the result backend at once (but never over a task another worker started),
tasks that expire while they wait behind others, and ``revoke_by_stamped_headers``.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.harness import ROOT, ChildProcess, WorkerProcess, wait_for

pytestmark = pytest.mark.integration

TIMEOUT = 30


class CeleryPrefork(ChildProcess):
    """``celery -A tests.apps.celery_compat_worker worker -P prefork -c 1``: Celery's default pool,
    as the suite runs it (a solo pool differs in details, e.g. task-retried's ``exception``)."""

    ready_marker = " ready."

    def __init__(self, broker_url: str, log_path: Path) -> None:
        env = {**os.environ, "INTEROP_BROKER": broker_url, "INTEROP_BACKEND": broker_url, "PYTHONPATH": str(ROOT)}
        env.pop("TQCTL_BACKEND", None)
        argv = [sys.executable, "-m", "celery", "-A", "tests.apps.celery_compat_worker", "worker", "-P", "prefork"]
        argv += ["-c", "1", "-n", "celery1@%h", "-l", "info", "--without-mingle", "--without-gossip"]
        super().__init__(argv, log_path, env)


@pytest.fixture(params=["ours", "celery"])
def worker(
    request: pytest.FixtureRequest, broker_url: str, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> Iterator[str]:
    """One worker of the given kind, ``-P prefork -c 1``, on the test's server."""
    if request.param == "ours":
        start_worker("-P", "prefork", "-c", "1", name="ours1", app="tests.apps.compat_worker")
        yield "ours"
        return
    theirs = CeleryPrefork(broker_url, tmp_path / "celery1.log")
    try:
        theirs.wait_ready(60)
        yield "celery"
    finally:
        theirs.close()


def test_retries_replacement_nesting_and_task_events(
    worker: str, celery_app: Any, broker_url: str, redis_client: redis.Redis
) -> None:
    from tests.integration.test_ops_events import Tail

    tail = Tail(broker_url)
    try:
        assert celery_app.control.enable_events(reply=True, timeout=10, limit=1)  # Celery's default is off
        switched_to_args = celery_app.send_task("compat.retry_with_args", kwargs={"foo": 1, "bar": 2, "label": "kept"})
        switched_to_kwargs = celery_app.send_task("compat.retry_with_kwargs", args=(1, 2))
        prioritised = celery_app.send_task("compat.retry_priority", priority=7)
        replaced = celery_app.send_task("compat.nesting", args=(3,))
        unpickleable = celery_app.send_task("compat.fail_unpickleable", args=("foo", "bar"))
        reporting = celery_app.send_task("compat.progress", args=(3,))
        retried = celery_app.send_task("compat.retry_plain")

        assert switched_to_args.get(timeout=TIMEOUT) == {"foo": 2, "bar": 3, "label": "kept", "retries": 1}
        assert switched_to_kwargs.get(timeout=TIMEOUT) == {"foo": 2, "bar": 2, "retries": 1}
        assert prioritised.get(timeout=TIMEOUT) == 7
        assert replaced.get(timeout=TIMEOUT) == [0, 1, 2, 3]
        assert reporting.get(timeout=TIMEOUT) == 3
        # An exception that cannot be rebuilt from its args is stored as Celery's wrapper.
        unpickleable.get(timeout=TIMEOUT, propagate=False)
        raw = redis_client.get(f"celery-task-meta-{unpickleable.id}")
        assert isinstance(raw, bytes)
        stored = json.loads(raw)
        assert stored["result"] == {
            "exc_type": "UnpickleableExceptionWrapper",
            "exc_message": ["tests.apps.compat_worker", "Unpickleable", ["foo"], "Unpickleable('foo')"],
            "exc_module": "celery.utils.serialization",
        }
        assert retried.get(timeout=TIMEOUT) == 1

        def event(kind: str, task_id: str) -> dict[str, Any] | None:
            return next((e for e in tail.seen() if e["type"] == kind and e.get("uuid") == task_id), None)

        # Task.send_event, and task-retried's exception when retry() was given none ("None").
        wait_for(lambda: event("task-progress", reporting.id), TIMEOUT, "the task's own task-progress event")
        wait_for(lambda: event("task-retried", retried.id), TIMEOUT, "the task-retried event")
        assert event("task-progress", reporting.id)["current"] == 3  # type: ignore[index]
        assert event("task-retried", retried.id)["exception"] == "None"  # type: ignore[index]
    finally:
        tail.stop()


def test_revocation_by_id_by_stamp_and_by_expiry(worker: str, celery_app: Any) -> None:
    from celery.canvas import StampingVisitor
    from celery.exceptions import TaskRevokedError

    # A revoke marks a task that has not started REVOKED at once; one another worker started
    # (a custom state here) keeps its state.
    backend = celery_app.backend
    elsewhere, waiting = str(uuid.uuid4()), str(uuid.uuid4())
    backend.store_result(elsewhere, {"hostname": "other@host"}, "PROGRESS")
    assert celery_app.control.revoke([elsewhere, waiting], reply=True, timeout=10, limit=1)
    assert backend.get_state(elsewhere) == "PROGRESS"
    assert backend.get_state(waiting) == "REVOKED"
    # ``AsyncResult.revoke()`` broadcasts with no expiry (kombu's ``expires: 0``) and asks no reply.
    quiet = celery_app.AsyncResult(str(uuid.uuid4()))
    quiet.revoke()
    wait_for(lambda: backend.get_state(quiet.id) == "REVOKED", TIMEOUT, "the revoke without reply to be handled")

    # Revoked by stamp: the reply is Celery's, the stamped task is revoked, another stamp runs.
    replies = celery_app.control.revoke_by_stamped_headers(
        {"mon": ["v1"]}, terminate=False, reply=True, timeout=10, limit=1
    )
    assert [next(iter(r.values())) for r in replies] == [
        {"ok": "headers {'mon': ['v1']} flagged as revoked, but not terminated"}
    ]

    class Mon(StampingVisitor):  # type: ignore[misc]
        def __init__(self, value: str) -> None:
            self.value = value

        def on_signature(self, sig: Any, **headers: Any) -> dict[str, Any]:
            return {"mon": self.value}

    hit, miss = celery_app.signature("compat.add", args=(1, 1)), celery_app.signature("compat.add", args=(2, 2))
    hit.stamp(visitor=Mon("v1"))
    miss.stamp(visitor=Mon("v2"))
    hit_result, miss_result = hit.apply_async(), miss.apply_async()
    assert miss_result.get(timeout=TIMEOUT) == 4
    with pytest.raises(TaskRevokedError):
        hit_result.get(timeout=TIMEOUT)

    # Expired while waiting behind a longer task (already reserved by the worker): revoked, not run.
    blocker = celery_app.send_task("compat.sleep", args=(2,))
    expiring = celery_app.send_task("compat.add", args=(1, 1), expires=1)
    with pytest.raises(TaskRevokedError):
        expiring.get(timeout=TIMEOUT)
    assert expiring.state == "REVOKED"
    assert blocker.get(timeout=TIMEOUT) == 2


def test_one_process_runs_tasks_in_the_order_they_were_sent(worker: str, broker_url: str) -> None:
    """``-c 1`` runs what it is sent one at a time, in order, as Celery's does. Tasks come in bursts
    of one to three, so the pool keeps going between idle and busy: ours once ran a task fetched
    by a child before one its parent had fetched just ahead of it (an expiry behind a long task
    was missed that way), until one process at a time fetched (``engine.worker.turn``). Sent by
    our client, whose sends are close enough together to reach that window often."""
    from tests.integration.conftest import client_app

    pace = random.Random(7)
    sent = []
    for compat in client_app("tests.apps.compat_worker", broker_url):
        for _ in range(300):
            sent += [compat.started_at.delay() for _ in range(pace.choice((1, 2, 2, 3)))]
            time.sleep(pace.choice((0.0005, 0.001, 0.002, 0.003)))
        started = [r.get(timeout=TIMEOUT) for r in sent]
    late = [i for i in range(1, len(started)) if started[i] < started[i - 1]]
    assert late == [], f"{len(late)} of {len(sent)} tasks ran before one sent ahead of them"


def test_pool_grow_and_shrink_move_the_prefetch_window(worker: str, celery_app: Any) -> None:
    """Celery adds ``prefetch multiplier`` messages per process grown (default 4) and takes them off again."""

    def prefetch() -> int:
        replies = celery_app.control.inspect(timeout=10, limit=1).stats() or {}
        assert len(replies) == 1, replies
        return int(next(iter(replies.values()))["prefetch_count"])

    assert prefetch() == 4
    assert celery_app.control.pool_grow(2, reply=True, timeout=10, limit=1)
    wait_for(lambda: prefetch() == 12, TIMEOUT, "prefetch_count 12 after growing to 3 processes")
    assert celery_app.control.pool_shrink(1, reply=True, timeout=10, limit=1)
    wait_for(lambda: prefetch() == 8, TIMEOUT, "prefetch_count 8 after shrinking to 2 processes")


def test_shrinking_a_one_process_pool_is_refused_in_the_reply(
    start_worker: Callable[..., WorkerProcess], celery_app: Any
) -> None:
    """Our pool keeps its last process (Celery's can shrink to none): a shrink that would take it
    answers with an error an operator sees, not "pool will shrink" for a pool that stays as it is."""
    start_worker("-P", "prefork", "-c", "1", name="ours1", app="tests.apps.compat_worker")
    replies = celery_app.control.pool_shrink(1, reply=True, timeout=10, limit=1)
    assert len(replies) == 1, replies
    (reply,) = replies[0].values()
    assert reply == {"error": "the pool is at its smallest (1 process); nothing to shrink"}
    stats = celery_app.control.inspect(timeout=10, limit=1).stats() or {}
    (worker_stats,) = stats.values()
    assert worker_stats["pool"]["max-concurrency"] == 1
    assert worker_stats["prefetch_count"] == 4


def test_a_failed_chord_body_lists_its_errbacks_among_its_children(worker: str, celery_app: Any) -> None:
    """A chord whose header fails: its body fails, its old-style errback runs with the body's id,
    and the body's stored failure lists that errback (as a group) among its children."""
    from celery import chord

    add, fail = celery_app.signature("compat.add", args=(1, 2)), celery_app.signature("compat.fail")
    body = celery_app.signature("compat.add", args=(0,)).on_error(celery_app.signature("compat.errback_old_style"))
    result = chord([add, fail], body).apply_async()
    with pytest.raises(Exception, match="header failed"):
        result.get(timeout=TIMEOUT)
    wait_for(lambda: result.children and result.children[0].children, TIMEOUT, "the body's children")
    errback = result.children[0].children[0]
    assert errback.get(timeout=TIMEOUT) == result.id
