"""``tqctl queues / purge / dead`` on the private RabbitMQ, with a real tqctl worker consuming
``celery``; and the verbs that still need the Redis layout refuse in one line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import amqp
import pytest

from engine.broker import connect
from engine.broker.base import DeadLetter
from tests.integration.harness import ROOT, WorkerProcess, wait_for
from tests.integration.rabbitmq import RabbitMQ

pytestmark = pytest.mark.integration
APP = "tests.apps.amqp_app"
IDLE = "tqctl-ops-idle"  # a queue no worker consumes


def tq(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TQCTL_BROKER": url, "PYTHONPATH": str(ROOT)}
    env.pop("TQCTL_BACKEND", None)
    return subprocess.run(
        [sys.executable, "-m", "tqctl", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def tq_json(url: str, *args: str) -> Any:
    proc = tq(url, *args, "--json")
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return json.loads(proc.stdout)


@pytest.fixture
def mq(amqp_url: str) -> Iterator[Any]:
    broker = connect(amqp_url)
    broker.declare([IDLE])
    try:
        yield broker
    finally:
        broker.purge(IDLE)
        broker.close()


@pytest.fixture
def worker(
    amqp_url: str, redis_url: str, redis_client: object, tmp_path: Path, ledger: Path
) -> Iterator[WorkerProcess]:
    env = {"LEDGER": str(ledger), "AMQP_TEST_BACKEND": redis_url}
    proc = WorkerProcess(amqp_url, ["-n", "ops@%h", "-c", "1", "-l", "info"], tmp_path / "w.log", env, app=APP)
    try:
        yield proc.wait_ready(60)
    finally:
        proc.close()


def queue_rows(url: str) -> dict[str, dict[str, Any]]:
    doc = tq_json(url, "queues", "-Q", IDLE, "-t", "3")
    return {row["name"]: {**row, "warnings": doc["warnings"]} for row in doc["queues"]}


def test_queues_and_purge_on_amqp(amqp_url: str, mq: Any, worker: WorkerProcess) -> None:
    for i in range(3):
        mq.publish(IDLE, json.dumps({"n": i}).encode())
    wait_for(lambda: mq.queue_consumers("celery") == 1, 30, "the worker to consume celery")
    rows = queue_rows(amqp_url)
    assert (rows["celery"]["depth"], rows["celery"]["consumer_count"]) == (0, 1)
    assert rows["celery"]["consumers"] == [f"ops@{socket.gethostname()}"]
    assert (rows[IDLE]["depth"], rows[IDLE]["consumer_count"]) == (3, 0)
    assert rows[IDLE]["warnings"] == [f"queue {IDLE!r} has 3 message(s) but no consumer"]

    assert tq_json(amqp_url, "purge", IDLE, "--dry-run") == {
        "queue": IDLE,
        "buckets": [],
        "count": 3,
        "dry_run": True,
    }
    assert mq.queue_depth(IDLE) == 3  # the dry run changed nothing
    assert tq_json(amqp_url, "purge", IDLE, "--yes") == {"queue": IDLE, "purged": 3}
    assert queue_rows(amqp_url)[IDLE]["depth"] == 0


def test_dead_letters_on_amqp(rabbitmq: RabbitMQ, amqp_url: str, mq: Any, worker: WorkerProcess) -> None:
    # a real one: the worker dead-letters a message whose body is not JSON
    conn = amqp.Connection(f"127.0.0.1:{rabbitmq.port}", userid="guest", password="guest")
    conn.connect()
    try:
        bad = amqp.Message(b"[1, 2", content_type="application/json", content_encoding="utf-8", delivery_mode=2)
        bad.properties["application_headers"] = {"task": "tests.apps.amqp_app.add", "id": "bad-ops"}
        conn.channel().basic_publish(bad, exchange="", routing_key="celery")
    finally:
        conn.close()
    wait_for(lambda: len(mq.dead_letters()) == 1, 30, "the worker to dead-letter the bad message")
    # and one from a queue nobody consumes, so a requeue stays where we can count it
    body = json.dumps({"body": "", "headers": {"id": "t-idle", "task": "x"}}).encode()
    mq.dead_letter(None, None, DeadLetter("L-idle", IDLE, "test", "", time.time(), "t-idle", "x", None, body))

    listed = {row["task_id"]: row for row in tq_json(amqp_url, "dead", "ls")}
    assert set(listed) == {"bad-ops", "t-idle"}
    assert (listed["bad-ops"]["reason"], listed["bad-ops"]["queue"]) == ("bad_body", "celery")
    shown = tq_json(amqp_url, "dead", "show", listed["bad-ops"]["id"])
    assert shown["task_id"] == "bad-ops" and "raw" in shown

    requeued = tq_json(amqp_url, "dead", "requeue", "L-idle", "--yes")
    assert (requeued["ids"], requeued["missing"]) == (["L-idle"], [])
    assert mq.queue_depth(IDLE) == 1
    assert tq_json(amqp_url, "dead", "delete", "--all", "--yes")["ids"] == [listed["bad-ops"]["id"]]
    assert tq_json(amqp_url, "dead", "ls") == []
    missing = tq(amqp_url, "dead", "delete", "L-idle", "--yes", "--json")
    assert missing.returncode == 1 and json.loads(missing.stdout)["missing"] == ["L-idle"]


def test_remote_control_on_amqp(amqp_url: str, worker: WorkerProcess) -> None:
    """Requests on celery.pidbox, replies on reply.celery.pidbox: the worker answers tqctl
    (-d: each command returns on the one reply it waits for, well before -t)."""
    name = f"ops@{socket.gethostname()}"
    pong = tq_json(amqp_url, "inspect", "ping", "-d", name, "-t", "20")
    assert [(row["name"], row["ok"], row["reply"]) for row in pong["nodes"]] == [(name, True, {"ok": "pong"})]
    status = tq_json(amqp_url, "status", "-d", name, "-t", "20")
    assert [row["name"] for row in status["nodes"]] == [name]
    workers = tq_json(amqp_url, "workers", "-d", name, "-t", "20")
    assert workers["count"] == 1 and workers["workers"][0]["concurrency"] == 1
    queues = tq_json(amqp_url, "inspect", "active_queues", "-d", name, "-t", "20")
    assert [q["name"] for q in queues["nodes"][0]["reply"]] == ["celery"]


def test_control_without_workers_exits_69_on_amqp(amqp_url: str) -> None:
    assert tq(amqp_url, "status", "-t", "0.5").returncode == 69


@pytest.mark.parametrize(
    ("argv", "missing"),
    [
        (["revoke", "some-id", "--yes"], "revokes (stored"),
        (["tasks"], "task history"),
    ],
)
def test_verbs_needing_a_backend_refuse_in_one_line_without_one(amqp_url: str, argv: list[str], missing: str) -> None:
    proc = tq(amqp_url, *argv)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and missing in lines[0] and "AMQP broker" in lines[0], proc.stderr


def test_a_queue_rabbitmq_refuses_is_not_called_a_wrong_login(amqp_url: str) -> None:
    """RabbitMQ refuses ``amq.*`` queue names with ACCESS_REFUSED, as it does a wrong password:
    ``tqctl call --queue amq.x`` said 'refused the login (user or password)'."""
    done = tq(amqp_url, "call", "tests.apps.amqp_app.add", "--args", "[1, 1]", "--queue", "amq.tqctl-test")
    out = (done.stdout + done.stderr).strip()
    assert done.returncode == 1 and out.count("\n") == 0, out
    assert "reserved prefix 'amq.*'" in out and "login" not in out and "guest:guest" not in out, out


def test_a_revoke_stored_but_not_broadcast_says_so(redis_url: str, redis_client: Any) -> None:
    """RabbitMQ away, its Redis backend up: `revoke ID --yes` stored the revoke (the workers then
    applied it) and still said "cannot reach broker", exit 1. Now it says what happened: stored,
    not broadcast; exit 0, or 1 with --terminate (no running task was killed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"amqp://guest:amqp-pw@127.0.0.1:{port}//"
    for task_id, extra, code in (("stored-1", [], 0), ("stored-2", ["--terminate"], 1)):
        env = {**os.environ, "TQCTL_BROKER": url, "TQCTL_BACKEND": redis_url, "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", "tqctl", "revoke", task_id, "--yes", *extra]
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == code, proc.stderr
        [line] = proc.stderr.strip().splitlines()
        assert "the revoke is stored (every worker reads it at its next heartbeat" in line, line
        assert f"could not be broadcast: cannot reach broker at 127.0.0.1:{port}" in line and "amqp-pw" not in line
        assert line.endswith("running tasks were not killed") == bool(extra)
        assert redis_client.zscore("tqctl.revoked", task_id) is not None


def test_task_with_no_record_on_rabbitmq_names_no_delayed_set(amqp_url: str, redis_url: str) -> None:
    """`task ID` on RabbitMQ said the id was not in "the broker's delayed set", which RabbitMQ has
    not (workers hold ETA tasks there)."""
    env = {**os.environ, "TQCTL_BROKER": amqp_url, "TQCTL_BACKEND": redis_url, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "tqctl", "task", "no-such-task-id"]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("tqctl: error: no record of task no-such-task-id: not in the history, the failure inbox")
    assert "delayed set" not in line


def test_a_rabbitmq_that_never_answers_costs_one_connect_of_the_timeout() -> None:
    """Against a port that takes connections and never speaks AMQP, ``queues``, ``status`` and
    ``purge`` with ``--timeout 1`` gave up only after kombu's two connect tries of 5 s and the
    pause between them (12.5-14 s); now after one try of the timeout, in one line. Counted as the
    connections the port took (each try waits out a whole timeout), not timed."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    server.setblocking(False)
    url = f"amqp://guest:n0t-shown@127.0.0.1:{server.getsockname()[1]}//"
    taken: list[socket.socket] = []

    def take_all() -> int:
        """The connections the exited command made: the kernel completed each into the backlog."""
        count = 0
        while True:
            try:
                taken.append(server.accept()[0])
            except BlockingIOError:
                return count
            count += 1

    try:
        for argv in (["queues"], ["status"], ["purge", "celery", "--yes"]):
            done = tq(url, *argv, "--timeout", "1")
            out = (done.stdout + done.stderr).strip()
            assert done.returncode == 1 and out.count("\n") == 0, (argv, out)
            assert "cannot reach broker" in out and "n0t-shown" not in out, out
            assert take_all() == 1, argv  # was 2 (kombu's second try)
    finally:
        server.close()
        for conn in taken:
            conn.close()
