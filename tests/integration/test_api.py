"""The public task API against real worker processes: every option a Celery user passes does its job.

Tasks come from ``tests/apps/api.py`` (request fields, retries, ignore_result, pickle) and the shared
``tests/apps/shop.py`` (time limits, rate limit, routing). Timing assertions are about behaviour
(not before due, spaced by the rate), never about speed.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import redis

from engine import App
from engine.broker.redis import OWNERS
from engine.exceptions import (
    MaxRetriesExceededError,
    SoftTimeLimitExceeded,
    TaskRevokedError,
    TimeLimitExceeded,
)
from engine.protocol.results import task_key
from engine.redisconn import client_from_url
from tests.integration.harness import ROOT, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.amqp_too]

UTC = dt.timezone.utc
HOST = socket.gethostname()
API = "tests.apps.api"


def ledger_lines(path: Path, prefix: str) -> list[tuple[str, float]]:
    """(tag, time) for each ledger line starting with ``prefix`` (api.py writes "<tag...> <time>")."""
    found = []
    for line in path.read_text().splitlines():
        if line.startswith(prefix):
            head, _, stamp = line.rpartition(" ")
            found.append((head, float(stamp)))
    return found


# -- sending and reading back -------------------------------------------------------------------


def test_delay_get_and_every_result_accessor(api: Any, start_worker: Any) -> None:
    start_worker("-P", "threads", "-c", "2", app=API)
    result = api.add.delay(2, 3)
    assert result.get(timeout=10) == 5
    assert result.ready() and result.successful() and not result.failed()
    assert (result.state, result.status, result.result, result.traceback) == ("SUCCESS", "SUCCESS", 5, None)
    again = api.add.AsyncResult(result.id)
    assert again.id == result.id and again.get(timeout=1) == 5 and again.state == "SUCCESS"
    assert api.app.AsyncResult(result.id).result == 5


def test_send_task_by_name_from_an_app_that_does_not_know_the_task(
    broker_url: str, backend_url: str, start_worker: Any
) -> None:
    start_worker("-P", "threads", "-c", "1", app=API)
    client = App("client", broker=broker_url, backend=backend_url)
    try:
        assert "tests.apps.api.add" not in client.tasks
        assert client.send_task("tests.apps.api.add", args=[20, 22]).get(timeout=10) == 42
        assert client.send_task("tests.apps.api.add", kwargs={"x": 1, "y": 2}).get(timeout=10) == 3
    finally:
        client.close()


def test_apply_async_options_reach_self_request(api: Any, start_worker: Any) -> None:
    start_worker("-P", "prefork", "-c", "1", name="w1", app=API)
    result = api.request_info.apply_async(
        (1, "two"), {"three": 3}, task_id="my-own-id", priority=3, headers={"x-tenant": "acme"}, queue="celery"
    )
    info = result.get(timeout=10)
    assert result.id == "my-own-id"
    assert info["id"] == "my-own-id" and info["retries"] == 0
    assert info["args"] == [1, "two"] and info["kwargs"] == {"three": 3}
    assert info["hostname"] == f"w1@{HOST}"
    assert info["delivery_info"]["routing_key"] == "celery" and info["delivery_info"]["priority"] == 3
    assert info["root_id"] == "my-own-id" and info["parent_id"] is None
    assert info["headers"] == {"x-tenant": "acme"}


def test_a_task_sent_from_a_task_records_parent_and_root(api: Any, start_worker: Any) -> None:
    start_worker("-P", "threads", "-c", "2", app=API)
    parent = api.spawn.delay()
    child_id = parent.get(timeout=10)
    child = api.request_info.AsyncResult(child_id).get(timeout=10)
    assert child["args"] == ["child"]
    assert child["parent_id"] == parent.id and child["root_id"] == parent.id


def test_get_timeout_raises_while_nothing_runs_it(api: Any) -> None:
    from engine.exceptions import TimeoutError as TaskTimeout

    result = api.add.delay(1, 1)
    with pytest.raises(TaskTimeout):
        result.get(timeout=0.5)
    assert result.state == "PENDING" and not result.ready()


# -- time: countdown, eta, expires ---------------------------------------------------------------


def test_countdown_and_eta_do_not_run_before_due(api: Any, start_worker: Any) -> None:
    start_worker("-P", "threads", "-c", "4", app=API)
    sent = time.time()
    by_countdown = api.request_info.apply_async(countdown=1.0)
    due = dt.datetime.now(UTC) + dt.timedelta(seconds=1.5)
    by_eta = api.request_info.apply_async(eta=due)
    naive_due = dt.datetime.now(UTC).replace(tzinfo=None) + dt.timedelta(seconds=1.2)
    by_naive_eta = api.request_info.apply_async(eta=naive_due)  # naive = UTC, as Celery with enable_utc
    now = api.request_info.delay()

    now.get(timeout=10)  # neither: it runs at once
    assert by_countdown.get(timeout=10)["started"] >= sent + 1.0
    assert by_eta.get(timeout=10)["started"] >= due.timestamp()
    assert by_naive_eta.get(timeout=10)["started"] >= naive_due.replace(tzinfo=UTC).timestamp()


def test_expired_tasks_end_revoked(api: Any, start_worker: Any, transport: str) -> None:
    stale = api.add.apply_async((1, 1), expires=0.3)  # no worker yet: it expires in the queue
    time.sleep(0.6)
    start_worker("-P", "threads", "-c", "2", app=API)
    if transport == "redis":
        with pytest.raises(TaskRevokedError):
            stale.get(timeout=10)
        assert stale.state == "REVOKED" and stale.ready() and not stale.successful()
    else:  # as Celery's: ``expires`` is also the message's TTL, so RabbitMQ drops it unrun and unrecorded
        assert api.add.delay(0, 0).get(timeout=10) == 0  # a sentinel sent after it
        assert stale.state == "PENDING" and api.app.broker.queue_depth("celery") == 0

    late = api.add.apply_async((1, 1), countdown=1.0, expires=0.4)  # due after it expires
    with pytest.raises(TaskRevokedError):
        late.get(timeout=10)
    assert late.state == "REVOKED"
    fresh = api.add.apply_async((2, 2), expires=60)
    assert fresh.get(timeout=10) == 4


# -- retries --------------------------------------------------------------------------------------


def test_retry_with_backoff_up_to_max_retries_exceeded(api: Any, start_worker: Any, ledger: Path) -> None:
    start_worker("-P", "prefork", "-c", "1", app=API)
    result = api.give_up.delay()
    with pytest.raises(MaxRetriesExceededError, match=r"Can.t retry tests.apps.api.give_up"):
        result.get(timeout=15)
    assert result.state == "FAILURE" and "MaxRetriesExceededError" in result.traceback
    tries = ledger_lines(ledger, "give_up")
    assert [tag for tag, _ in tries] == ["give_up 0", "give_up 1", "give_up 2"]  # max_retries=2
    gaps = [b - a for (_, a), (_, b) in pairwise(tries)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4  # countdown 0.2 * 2**retries: never early


def test_autoretry_backoff_is_capped_and_the_error_stands(api: Any, start_worker: Any, ledger: Path) -> None:
    start_worker("-P", "threads", "-c", "1", app=API)
    result = api.unreachable.delay()
    with pytest.raises(ConnectionError, match="service down"):
        result.get(timeout=15)
    tries = ledger_lines(ledger, "unreachable")
    assert [tag for tag, _ in tries] == [f"unreachable {n}" for n in range(4)]  # first run + max_retries=3
    gaps = [b - a for (_, a), (_, b) in pairwise(tries)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.3 and gaps[2] >= 0.3  # 0.2, 0.4→0.3 cap, 0.8→0.3 cap
    # that the cap applies is tests/unit/test_api.py's (the countdown the worker retries with)


def test_retry_without_countdown_waits_default_retry_delay(api: Any, start_worker: Any, ledger: Path) -> None:
    start_worker("-P", "threads", "-c", "1", app=API)
    assert api.default_delay.delay().get(timeout=10) == 1
    (_, first), (_, second) = ledger_lines(ledger, "default_delay")
    assert second - first >= 0.5


def test_acks_late_task_survives_a_killed_worker(shop: Any, start_worker: Any, ledger: Path) -> None:
    """acks_late: the message is settled only when the task ends, so a worker that dies mid-run
    leaves it to be run again by another worker."""
    first = start_worker("-P", "threads", "-c", "2", name="doomed")
    late = shop.slow_late.delay(2, "late")
    wait_for(lambda: "start late" in ledger.read_text(), 10, "the task to start")
    first.kill_group()
    start_worker("-P", "threads", "-c", "2", name="heir")
    assert late.get(timeout=20) == "late"
    text = ledger.read_text()
    assert text.count("start late") == 2 and text.count("end late") == 1


def owners_of(client: redis.Redis, pid: int) -> list[str]:
    """The broker's live owner records (``host.pid.random``) of the worker process ``pid``."""
    members = [m.decode() if isinstance(m, bytes) else str(m) for m in client.zrange(OWNERS, 0, -1)]
    return [m for m in members if m.rsplit(".", 2)[-2:-1] == [str(pid)]]


def test_early_ack_task_is_not_rerun_after_a_killed_worker(
    shop: Any, start_worker: Any, ledger: Path, redis_client: redis.Redis, transport: str
) -> None:
    first = start_worker("-P", "threads", "-c", "2", name="doomed")
    early = shop.slow_early.delay(2, "early")
    wait_for(lambda: "start early" in ledger.read_text(), 10, "the task to start")
    if transport == "redis":  # RabbitMQ hands a dead worker's unacked messages back itself, at once
        assert owners_of(redis_client, first.pid), "the worker is a registered owner"
    first.kill_group()
    start_worker("-P", "threads", "-c", "2", name="heir")
    if transport == "redis":  # the heir's reaper hands back what the dead worker owned, then drops it
        wait_for(lambda: not owners_of(redis_client, first.pid), 20, "the dead worker to be reaped")
    assert shop.add.delay(1, 1).get(timeout=20) == 2  # a sentinel behind anything handed back
    text = ledger.read_text()
    assert text.count("start early") == 1 and "end early" not in text
    assert early.state == "PENDING"


# -- limits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["prefork", "solo"])  # threads: the exception lands after sleep() returns
def test_soft_time_limit_lets_the_task_clean_up(shop: Any, start_worker: Any, pool: str) -> None:
    start_worker("-P", pool, "-c", "1")
    assert shop.soft_limited.delay().get(timeout=10) == "cleaned up"
    uncaught = shop.slow_early.apply_async((5,), soft_time_limit=0.3)  # the option per call
    with pytest.raises(SoftTimeLimitExceeded):
        uncaught.get(timeout=10)
    assert uncaught.state == "FAILURE"


def test_hard_time_limit_fails_the_task_and_replaces_the_child(shop: Any, start_worker: Any) -> None:
    worker = start_worker("-P", "prefork", "-c", "2")
    wait_for(lambda: len(worker.children()) == 2, 10, "two pool children")
    before = set(worker.children())
    result = shop.hard_limited.delay()
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=15)
    assert result.state == "FAILURE" and result.failed()
    wait_for(
        lambda: len(worker.children()) == 2 and set(worker.children()) != before, 10, "the killed child to be replaced"
    )
    after = set(worker.children())
    assert len(before - after) == 1 and len(after - before) == 1  # exactly one child was replaced
    assert worker.proc.poll() is None  # the main process lived on, same pid
    pids = {shop.pid.delay().get(timeout=10) for _ in range(6)}
    assert pids <= after and worker.pid not in pids


def test_rate_limit_spaces_task_starts(shop: Any, start_worker: Any) -> None:
    start_worker("-P", "threads", "-c", "4")
    results = [shop.limited.delay(i) for i in range(10)]
    starts = sorted(r.get(timeout=20) for r in results)
    assert starts[-1] - starts[0] >= 1.6  # 5/s: nine gaps of ~0.2 s, even with four free threads
    assert min(b - a for a, b in pairwise(starts)) >= 0.1


# -- routing --------------------------------------------------------------------------------------


def test_routing_by_queue_option_and_task_routes(shop: Any, start_worker: Any) -> None:
    start_worker("-P", "threads", "-c", "2", name="default")
    start_worker("-P", "threads", "-c", "2", "-Q", "high", name="high")
    assert shop.where.delay().get(timeout=10) == "default"
    assert shop.where.apply_async(queue="high").get(timeout=10) == "high"
    assert shop.urgent.delay().get(timeout=10) == "high"  # @app.task(queue="high")
    try:
        shop.app.conf.task_routes = {"tests.apps.shop.where": {"queue": "high"}}
        assert shop.where.delay().get(timeout=10) == "high"
        assert shop.where.apply_async(queue="celery").get(timeout=10) == "default"  # explicit beats routes
        shop.app.conf.task_routes = [{"tests.apps.shop.wh*": "high"}]
        assert shop.app.send_task("tests.apps.shop.where").get(timeout=10) == "high"
    finally:
        shop.app.conf.task_routes = None


def test_a_default_worker_does_not_take_another_queues_task(shop: Any, start_worker: Any) -> None:
    start_worker("-P", "threads", "-c", "2", name="default")
    waiting = shop.urgent.delay()
    assert shop.where.delay().get(timeout=10) == "default"  # a sentinel: the worker fetched after `waiting`
    assert waiting.state == "PENDING" and shop.app.broker.queue_depth("high") == 1
    start_worker("-P", "threads", "-c", "1", "-Q", "high", name="high")
    assert waiting.get(timeout=10) == "high"


# -- serializers and results ----------------------------------------------------------------------


def test_pickle_is_dead_lettered_by_a_default_worker(shop: Any, start_worker: Any) -> None:
    start_worker("-P", "threads", "-c", "1")
    refused = shop.add.apply_async((1, 2), serializer="pickle")
    assert shop.add.delay(1, 2).get(timeout=10) == 3  # the worker keeps serving JSON

    def letter() -> Any:
        return next((x for x in shop.app.broker.dead_letters() if x.task_id == refused.id), None)

    wait_for(letter, 10, "the pickle message to be dead-lettered")
    assert letter().reason == "content_disallowed" and letter().task_name == "tests.apps.shop.add"
    assert refused.state == "PENDING"  # never ran, and nothing claimed it did


def test_pickle_runs_when_the_worker_accepts_it(api: Any, start_worker: Any) -> None:
    start_worker("-P", "prefork", "-c", "1", app=API, env={"ACCEPT_CONTENT": "json,pickle"})
    assert api.pickled.delay(2, 3).get(timeout=10) == 5  # serializer="pickle" task option
    assert api.add.apply_async((4, 5), serializer="pickle").get(timeout=10) == 9


def test_ignore_result_stores_nothing(api: Any, start_worker: Any, ledger: Path, redis_client: redis.Redis) -> None:
    start_worker("-P", "threads", "-c", "1", app=API)
    quiet = api.quiet.delay("hush")
    loud = api.add.delay(1, 1)
    assert loud.get(timeout=10) == 2
    wait_for(lambda: ledger_lines(ledger, "quiet hush"), 10, "the quiet task to run")
    also = api.add.apply_async((2, 2), ignore_result=True)
    assert api.add.delay(3, 3).get(timeout=10) == 6  # FIFO on one thread: `also` ran before this
    assert redis_client.exists(task_key(loud.id)) == 1
    assert redis_client.exists(task_key(quiet.id)) == 0 and redis_client.exists(task_key(also.id)) == 0
    assert quiet.state == "PENDING"


# -- configuration from the environment ----------------------------------------------------------


def test_env_vars_choose_broker_and_backend_for_client_and_worker(
    broker_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend_url = f"{redis_url}?db=1"
    env = {**os.environ, "TQCTL_BROKER": broker_url, "TQCTL_BACKEND": backend_url, "PYTHONPATH": str(ROOT)}
    log = tmp_path / "envworker.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tqctl", "worker", "-A", API, "-P", "threads", "-c", "1", "-n", "env@%h"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: " ready: " in log.read_text() or proc.poll() is not None, 15, "the worker")
        assert proc.poll() is None, log.read_text()
        monkeypatch.setenv("TQCTL_BROKER", broker_url)
        monkeypatch.setenv("TQCTL_BACKEND", backend_url)
        client = App("envclient")  # nothing configured: both URLs come from the environment
        result = client.send_task("tests.apps.api.add", args=[40, 2])
        assert result.get(timeout=10) == 42
        client.close()
        results_db = client_from_url(backend_url)
        db0 = client_from_url(redis_url)  # the broker itself on Redis
        try:
            assert db0.exists(task_key(result.id)) == 0
            assert results_db.get(task_key(result.id)) is not None
        finally:
            results_db.close()
            db0.close()
    finally:
        proc.kill()
        proc.wait(10)
