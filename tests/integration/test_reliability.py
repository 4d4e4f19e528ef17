"""Reliability with real worker processes and real signals: no task is lost or run twice.

Warm shutdown (SIGTERM, a first SIGINT) lets running tasks finish and hands back the rest; cold
shutdown (a second SIGINT) hands back everything at once; a prefork child or a whole worker killed
with SIGKILL loses nothing (acks_late); a parked ETA task runs once; a task that kills its process
every time ends in the dead-letter store instead of looping; a broker it cannot use (closed port,
wrong password) stops the worker with one clean stderr line. Tasks live in ``tests.apps.reliability``
and write a ledger line per attempt, so every assertion is about what really ran, and where.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import cast
from urllib.parse import urlsplit

import pytest
import redis

from engine.broker.redis import DELAYED, INFLIGHT, OWNERS
from engine.bundled import client_for, start_private
from engine.exceptions import WorkerLostError
from tests.integration.harness import ROOT, WorkerProcess, wait_for
from tests.integration.rabbitmq import RabbitMQ

pytestmark = pytest.mark.integration
# Tests marked ``amqp_too`` run on Redis and on RabbitMQ. On Redis the worker's ownership of a
# fetched message is ours (an owner id heartbeating in the broker, an in-flight hash per owner,
# the delayed set); on RabbitMQ it is the broker's own (unacked deliveries on the consumer's
# channel, redelivered when it closes; delays inside its delay queues). Checks of that bookkeeping
# run where it exists; what a user sees (queue depths, the ledger, results) is checked on both.

APP = "tests.apps.reliability"


# -- reading what happened ------------------------------------------------------------------------
def entries(ledger: Path, what: str, tag: str) -> list[dict]:
    """Ledger lines ``<what> <tag> <task id> <pid> <time>`` for one tag, oldest first."""
    found = []
    for line in ledger.read_text().splitlines():
        parts = line.split()
        if parts[:2] == [what, tag]:
            found.append({"id": parts[2], "pid": int(parts[3]), "time": float(parts[4])})
    return found


def owner_of(client: redis.Redis, name: str, worker: WorkerProcess) -> str:
    """The broker owner id of a running worker (``<name>@<host>.<pid>.<random>``)."""
    found: list[str] = []

    def look() -> bool:
        members = [m.decode() for m in cast(list[bytes], client.zrange(OWNERS, 0, -1))]
        found[:] = [m for m in members if m.startswith(f"{name}@") and f".{worker.pid}." in m]
        return bool(found)

    wait_for(look, 10, f"{name} to register as an owner")
    return found[0]


def owner_on_redis(transport: str, client: redis.Redis, name: str, worker: WorkerProcess) -> str | None:
    """The worker's owner id on Redis; None on RabbitMQ, where the broker itself tracks its consumers."""
    return owner_of(client, name, worker) if transport == "redis" else None


def depth(rel: ModuleType, queue: str = "celery") -> int:
    """Messages waiting on the queue (on RabbitMQ: ready ones, not those delivered and unacked)."""
    return int(rel.app.broker.queue_depth(queue))


def assert_retired(rel: ModuleType, client: redis.Redis, owner: str | None) -> None:
    """The stopped worker holds nothing and is known gone: its owner record on Redis, its
    consumer on RabbitMQ."""
    if owner is None:
        assert rel.app.broker.queue_consumers("celery") == 0, "RabbitMQ still has the worker's consumer"
        return
    assert not client.exists(INFLIGHT + owner), "the owner's in-flight hash outlived the worker"
    assert client.zscore(OWNERS, owner) is None, "the owner still heartbeats after it stopped"


def no_inflight_anywhere(client: redis.Redis) -> bool:
    return all(client.hlen(key) == 0 for key in client.scan_iter(match=INFLIGHT + "*"))


# -- 1. warm shutdown -------------------------------------------------------------------------------
@pytest.mark.amqp_too
@pytest.mark.parametrize(
    ("pool", "how"),
    [
        ("prefork", "SIGTERM to the worker"),
        ("prefork", "SIGINT to the process group (Ctrl-C)"),
        ("threads", "SIGTERM to the worker"),
        ("solo", "SIGINT to the process group (Ctrl-C)"),
    ],
)
def test_warm_shutdown_finishes_running_and_hands_back_reserved(
    rel, transport: str, start_worker, redis_client, ledger: Path, tmp_path: Path, pool: str, how: str
) -> None:
    # prefetch 8 with 4 in hand: the consumer is still fetching (blocked) when the signal lands.
    w1 = start_worker("-P", pool, "-c", "1", "--prefetch-multiplier", "8", name="w1", app=APP)
    owner = owner_on_redis(transport, redis_client, "w1", w1)
    gate = tmp_path / "gate"
    running = rel.gated_late.delay("running", str(gate))
    wait_for(lambda: entries(ledger, "start", "running"), 10, "the long task to start")
    waiting = [rel.record.delay(f"r{i}") for i in range(3)]
    # All three fetched (off the queue; on Redis in the owner's in-flight hash) but not started: -c 1 is busy.
    wait_for(
        lambda: depth(rel) == 0 and (owner is None or redis_client.hlen(INFLIGHT + owner) == 4),
        20,
        "the worker to reserve the three waiting tasks",
    )

    if how.startswith("SIGTERM"):
        w1.signal(signal.SIGTERM)
    else:
        os.killpg(w1.pid, signal.SIGINT)
    wait_for(lambda: "warm shutdown" in w1.log(), 10, "the worker to begin its warm shutdown")
    gate.touch()  # the running task ends now, while the worker is shutting down
    assert w1.wait(30) == 0

    assert len(entries(ledger, "end", "running")) == 1, "the running task was not allowed to finish"
    assert running.get(timeout=1) == "running"
    for i in range(3):
        assert not entries(ledger, "run", f"r{i}"), "a reserved task started after the stop signal"
    assert depth(rel) == 3, "the reserved tasks did not go back to the queue"
    assert_retired(rel, redis_client, owner)
    assert "warm shutdown" in w1.log()

    w2 = start_worker("-c", "2", name="w2", app=APP)
    assert [r.get(timeout=10) for r in waiting] == ["r0", "r1", "r2"]
    w2_children = set(w2.children())
    for i in range(3):
        (run,) = entries(ledger, "run", f"r{i}")
        assert run["pid"] in w2_children


# -- 2. cold shutdown -------------------------------------------------------------------------------
@pytest.mark.amqp_too
@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_cold_shutdown_hands_back_every_unfinished_task(
    rel, transport: str, start_worker, redis_client, ledger: Path, pool: str
) -> None:
    w1 = start_worker("-P", pool, "-c", "2", "--prefetch-multiplier", "4", name="w1", app=APP)
    owner = owner_on_redis(transport, redis_client, "w1", w1)
    late = rel.first_long_late.delay("late", 60)
    early = rel.first_long_early.delay("early", 60)
    wait_for(
        lambda: entries(ledger, "start", "late") and entries(ledger, "start", "early"), 10, "both long tasks to start"
    )
    reserved = [rel.record.delay(f"r{i}") for i in range(3)]
    # in flight: the late-ack task and the three reserved ones; the early-ack task is acked already.
    wait_for(
        lambda: depth(rel) == 0 and (owner is None or redis_client.hlen(INFLIGHT + owner) == 4),
        20,
        "the reserved tasks to be fetched and the early task acked",
    )

    os.killpg(w1.pid, signal.SIGINT)
    wait_for(lambda: "warm shutdown" in w1.log(), 10, "the first Ctrl-C to start a warm shutdown")
    os.killpg(w1.pid, signal.SIGINT)
    code = w1.wait(10)  # promptly: a warm stop would wait on the 60 s tasks (up to tqctl_shutdown_timeout)
    assert code >= 0, f"worker died by signal {-code} instead of shutting down"
    assert "cold shutdown" in w1.log()
    assert not entries(ledger, "end", "late") and not entries(ledger, "end", "early")
    assert depth(rel) == 5, "not every unfinished task went back to the queue"
    assert_retired(rel, redis_client, owner)

    start_worker("-c", "2", name="w2", app=APP)
    assert late.get(timeout=15) == "late"
    assert early.get(timeout=15) == "early"
    assert [r.get(timeout=15) for r in reserved] == ["r0", "r1", "r2"]
    for tag in ("late", "early"):
        assert len(entries(ledger, "start", tag)) == 2 and len(entries(ledger, "end", tag)) == 1
    for i in range(3):
        assert len(entries(ledger, "run", f"r{i}")) == 1


# -- 3. a prefork child killed ----------------------------------------------------------------------
@pytest.mark.amqp_too
def test_killed_child_task_completes_and_worker_survives(rel, start_worker, ledger: Path) -> None:
    w1 = start_worker("-c", "1", name="w1", app=APP)
    result = rel.first_long_late.delay("victim", 60)
    wait_for(lambda: entries(ledger, "start", "victim"), 10, "the task to start")
    (first,) = entries(ledger, "start", "victim")
    assert first["pid"] in w1.children(), "the task did not run in a pool child of the worker"

    os.kill(first["pid"], signal.SIGKILL)
    assert result.get(timeout=10) == "victim"  # acceptance: done within 10 s of the kill

    assert w1.proc.poll() is None, "the worker's main process died with its child"
    starts = entries(ledger, "start", "victim")
    assert len(starts) == 2 and len(entries(ledger, "end", "victim")) == 1
    assert starts[1]["pid"] != first["pid"]
    assert starts[1]["pid"] in w1.children(), "the retry did not run in the worker's replacement child"
    assert "lost its process" in w1.log()
    assert rel.app.broker.dead_letter_count() == 0


@pytest.mark.amqp_too
def test_a_long_task_never_holds_back_the_tasks_fetched_after_it(
    rel, start_worker, ledger: Path, tmp_path: Path
) -> None:
    """Prefork fetches ahead (prefetch window 8 at ``-c 2``), but a fetched task waits for any
    idle child, never for one busy child (the head-of-line blocking Celery's ``-Ofair`` removed):
    every short task runs in the other child while the long one is still running."""
    w1 = start_worker("-c", "2", "--prefetch-multiplier", "4", name="w1", app=APP)
    gate = tmp_path / "gate"
    long = rel.gated_late.delay("long", str(gate))
    wait_for(lambda: entries(ledger, "start", "long"), 10, "the long task to start")
    shorts = [rel.record.delay(f"s{i}") for i in range(12)]  # more than the window: fetched in turns

    wait_for(
        lambda: all(entries(ledger, "run", f"s{i}") for i in range(12)),
        30,
        "every short task to run while the long one runs",
    )

    assert not entries(ledger, "end", "long"), "the long task ended first: this proves nothing"
    (started,) = entries(ledger, "start", "long")
    ran_in = {entries(ledger, "run", f"s{i}")[0]["pid"] for i in range(12)}
    assert started["pid"] not in ran_in and ran_in <= set(w1.children())
    gate.touch()
    assert long.get(timeout=10) == "long"
    assert [r.get(timeout=10) for r in shorts] == [f"s{i}" for i in range(12)]


# -- 4. a whole worker killed ------------------------------------------------------------------------
@pytest.mark.amqp_too
def test_killed_worker_task_completes_on_survivor(
    rel, transport: str, start_worker, redis_client, ledger: Path
) -> None:
    w1 = start_worker("-c", "1", name="w1", app=APP)
    owner = owner_on_redis(transport, redis_client, "w1", w1)
    result = rel.first_long_late.delay("orphan", 60)
    wait_for(lambda: entries(ledger, "start", "orphan"), 10, "the task to start on w1")
    assert entries(ledger, "start", "orphan")[0]["pid"] in w1.children()
    w2 = start_worker("-c", "1", name="w2", app=APP)

    w1.kill_group()
    assert result.get(timeout=10) == "orphan"  # acceptance: done within 10 s of the kill

    starts = entries(ledger, "start", "orphan")
    assert len(starts) == 2 and len(entries(ledger, "end", "orphan")) == 1
    assert starts[1]["pid"] in w2.children()
    if owner is not None:  # on Redis the survivor reaps the dead owner; RabbitMQ redelivers by itself
        assert "recovered 1 message(s)" in w2.log()
        assert redis_client.zscore(OWNERS, owner) is None and not redis_client.exists(INFLIGHT + owner)


# -- 5. an ETA task while workers come and go ---------------------------------------------------------
@pytest.mark.amqp_too
def test_eta_task_runs_once_not_early_across_worker_restart(
    rel, transport: str, start_worker, redis_client, ledger: Path
) -> None:
    """On Redis the task is parked in the delayed set; on RabbitMQ it waits in the delay queues,
    comes out up to a second early and is held by a worker for the rest."""
    start_worker("-c", "1", name="w1", app=APP)
    sent = time.time()
    result = rel.record.apply_async(("eta",), countdown=30)
    eta = sent + 30  # at most a few milliseconds before the message's own ETA
    if transport == "redis":
        wait_for(lambda: redis_client.zcard(DELAYED) == 1, 10, "the ETA task to be parked")
        eta = redis_client.zrange(DELAYED, 0, 0, withscores=True)[0][1]

    w2 = start_worker("-c", "1", name="w2", app=APP)
    w2_owner = owner_on_redis(transport, redis_client, "w2", w2)
    w2.signal(signal.SIGTERM)
    assert w2.wait(30) == 0
    if w2_owner is not None:
        assert_retired(rel, redis_client, w2_owner)
        assert redis_client.zcard(DELAYED) == 1, "the parked task moved or was copied"
    assert depth(rel) == 0, "the ETA task reached its queue early"
    assert not entries(ledger, "run", "eta"), "the ETA task ran early"

    assert result.get(timeout=60) == "eta"
    (run,) = entries(ledger, "run", "eta")
    assert run["time"] >= eta, f"ran {eta - run['time']:.3f}s before its ETA"
    # No copy is left anywhere that could run it a second time.
    if transport == "redis":
        wait_for(lambda: no_inflight_anywhere(redis_client), 5, "the ETA task's ack")
        assert redis_client.zcard(DELAYED) == 0
    assert rel.record.delay("sentinel").get(timeout=20) == "sentinel"
    assert depth(rel) == 0
    assert len(entries(ledger, "run", "eta")) == 1


# -- 6. a poison task -----------------------------------------------------------------------------------
@pytest.mark.amqp_too
def test_task_that_kills_its_process_is_dead_lettered_after_delivery_limit(
    rel, transport: str, start_worker, redis_client, ledger: Path
) -> None:
    w1 = start_worker("-c", "1", name="w1", app=APP)
    owner = owner_on_redis(transport, redis_client, "w1", w1)
    result = rel.die_late.delay("poison")
    broker = rel.app.broker
    wait_for(lambda: broker.dead_letter_count() == 1, 30, "the poison task to be dead-lettered")

    (letter,) = broker.dead_letters()
    assert letter.reason == "worker_lost"
    assert letter.task_id == result.id and letter.task_name == rel.die_late.name
    assert letter.queue == "celery"
    assert f"lost its process {rel.DELIVERY_LIMIT} times" in letter.detail
    assert result.id.encode() in letter.raw
    assert len(entries(ledger, "die", "poison")) == rel.DELIVERY_LIMIT
    with pytest.raises(WorkerLostError):
        result.get(timeout=5)
    assert result.state == "FAILURE"
    # Nothing left to loop on, and the worker still serves.
    assert depth(rel) == 0 and (owner is None or redis_client.hlen(INFLIGHT + owner) == 0)
    assert rel.pid.delay().get(timeout=10)[1] == w1.pid
    assert len(entries(ledger, "die", "poison")) == rel.DELIVERY_LIMIT


# -- 8. a broker the worker cannot use ---------------------------------------------------------------
SECRET = "s3cr3t"


@pytest.fixture
def password_port(tmp_path: Path) -> Iterator[int]:
    """A private TCP server (not the session's) that demands a password other than ``SECRET``."""
    server = start_private(tmp_path / "auth-server", unix_socket=False)
    port = int(urlsplit(server.url).port or 0)
    with client_for(server.url) as client:
        client.config_set("requirepass", "the-real-password")
    try:
        yield port
    finally:
        with client_for(f"redis://:the-real-password@127.0.0.1:{port}/0") as client:
            client.config_set("requirepass", "")  # so stop() can SHUTDOWN it politely
        server.stop()


def assert_one_clean_line(url: str, host: str, needs_auth: bool, backend: str | None = None) -> None:
    """The worker exits non-zero with one stderr line naming the host, never the password."""
    env = {**os.environ, "TQCTL_BROKER": url, "PYTHONPATH": str(ROOT)}
    env.pop("TQCTL_BACKEND", None)
    if backend is not None:
        env["TQCTL_BACKEND"] = backend

    done = subprocess.run(
        [sys.executable, "-m", "tqctl", "worker", "-A", "tests.apps.shop"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        stdin=subprocess.DEVNULL,
    )

    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{done.stderr}"
    assert host in lines[0]
    assert SECRET not in done.stderr + done.stdout
    assert ("password" in lines[0].lower() or "auth" in lines[0].lower()) if needs_auth else "refused" in lines[0]


@pytest.mark.parametrize("target", ["closed port", "closed port, password in URL", "wrong password", "no password"])
def test_worker_exits_with_one_clean_line_when_broker_is_unusable(request, target: str) -> None:
    needs_auth = target in ("wrong password", "no password")
    port = request.getfixturevalue("password_port") if needs_auth else 1
    host = f"127.0.0.1:{port}"
    url = f"redis://:{SECRET}@{host}/0" if "password" in target and target != "no password" else f"redis://{host}/0"
    assert_one_clean_line(url, host, needs_auth)


@pytest.mark.parametrize("target", ["closed port", "wrong password"])
def test_worker_exits_with_one_clean_line_when_rabbitmq_is_unusable(
    rabbitmq: RabbitMQ, redis_url: str, target: str
) -> None:
    needs_auth = target == "wrong password"
    host = f"127.0.0.1:{rabbitmq.port if needs_auth else 1}"
    assert_one_clean_line(f"amqp://guest:{SECRET}@{host}//", host, needs_auth, backend=redis_url)


# Redis-only: on RabbitMQ a worker whose broker died loses nothing in flight (RabbitMQ requeues
# the unacked), and test_amqp_worker.py restarts RabbitMQ under a draining worker.
def test_worker_stopped_after_its_broker_died_says_so_in_one_line(rel, tmp_path: Path) -> None:
    """Ctrl-C twice while the broker is gone: the worker still exits at once, with one line saying
    where its unfinished work is (in flight in the broker, for the next worker), not a traceback."""
    with start_private(tmp_path / "server") as server:
        rel.app.close()
        rel.app.conf.broker_url = rel.app.conf.result_backend = server.url
        ledger = tmp_path / "ledger"
        ledger.touch()
        rel.first_long_late.delay("held", 60)
        worker = WorkerProcess(
            server.url,
            ["-P", "threads", "-c", "1", "-n", "w1@%h"],
            tmp_path / "w.log",
            {"LEDGER": str(ledger)},
            app=APP,
        ).wait_ready()
        try:
            wait_for(lambda: "start held" in ledger.read_text(), 10, "the task to start")
            client = client_for(server.url)
            owners = cast(list[bytes], client.zrange(OWNERS, 0, -1))
            assert len(owners) == 1 and client.hlen(INFLIGHT + owners[0].decode()) == 1
            server_pid = int(client.info("server")["process_id"])
            client.close()
            rel.app.close()
            os.kill(server_pid, signal.SIGKILL)
            worker.signal(signal.SIGINT)
            wait_for(lambda: "warm shutdown" in worker.log(), 5, "the warm shutdown to begin")
            worker.signal(signal.SIGINT)
            assert worker.wait(20) != 0
        finally:
            worker.close()
    text = worker.log()
    assert "Traceback" not in text
    last = text.strip().splitlines()[-1]
    assert last.startswith("tqctl: error: broker at ") and "another worker sees this one gone" in last
