"""The scripted commands against a REAL Celery 5 worker (``celery worker -E``) on the session's server.

``celery_app`` below is the worker's app (``celery -A tests.integration.test_ops_celery:celery_app``):
plain Celery tasks, nothing from our engine, so every reply and event checked here is Celery's own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import Reject

from engine import App
from tests.integration.harness import ROOT, wait_for
from tests.integration.test_ops_events import TASK_TYPES, WORKER_TYPES, Tail

pytestmark = pytest.mark.integration
HOST = socket.gethostname()
C1 = f"c1@{HOST}"

celery_app = Celery(
    "ops_celery",
    broker=os.environ.get("OPS_BROKER"),
    backend=os.environ.get("OPS_BACKEND") or os.environ.get("OPS_BROKER"),
    set_as_current=False,
)  # importing this test module must not change Celery's current app
celery_app.conf.update(broker_connection_retry_on_startup=True, task_default_queue="celery")


@celery_app.task(name="ops.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@celery_app.task(name="ops.add")
def add(x: int, y: int) -> int:
    return x + y


@celery_app.task(name="ops.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@celery_app.task(name="ops.retry_once", bind=True, max_retries=1)
def retry_once(self: Any) -> int:
    if self.request.retries == 0:
        raise self.retry(countdown=0.1)
    return self.request.retries


@celery_app.task(name="ops.reject", acks_late=True)  # Celery sends task-rejected only for an unacked message
def reject() -> None:
    raise Reject("refused by the task", requeue=False)


def tq(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TQCTL_BROKER": url, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "tqctl", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )


def tq_json(url: str, *args: str, code: int = 0) -> Any:
    proc = tq(url, *args, "--json")
    assert proc.returncode == code, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return json.loads(proc.stdout)


def reply(url: str, *args: str, code: int = 0) -> Any:
    doc = tq_json(url, *args, "-d", C1, code=code)
    assert doc["count"] == 1 and doc["nodes"][0]["name"] == C1, doc
    return doc["nodes"][0]["reply"] if code == 0 else doc["nodes"][0]["error"]


def test_status_inspect_control_and_tail_against_a_real_celery_worker(broker_url: str, tmp_path: Path) -> None:
    tail = Tail(broker_url)
    env = {**os.environ, "OPS_BROKER": broker_url, "PYTHONPATH": str(ROOT)}
    log = open(tmp_path / "celery.log", "ab")
    celery = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.integration.test_ops_celery:celery_app",
            "worker",
            "-E",
            "-P",
            "prefork",
            "-c",
            "2",
            "-n",
            "c1@%h",
            "-l",
            "info",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = App("client", broker=broker_url, backend=broker_url)
    try:
        wait_for(lambda: tq(broker_url, "status", "-d", C1).returncode == 0, 30, "the Celery worker")
        status = tq_json(broker_url, "status")
        assert status == {"nodes": [{"name": C1, "ok": True, "reply": {"ok": "pong"}, "error": None}], "count": 1}
        row = tq_json(broker_url, "workers", "--listen", "2.5")["workers"][0]
        assert (row["name"], row["pool"], row["concurrency"], row["processes"]) == (C1, "prefork", 2, 2)
        assert row["heartbeat_age"] is not None and len(row["load"]) == 3

        # inspect: every method, with what the worker holds
        long = tq_json(broker_url, "call", "ops.sleep", "--args", "[60]")["id"]
        wait_for(lambda: [t["id"] for t in reply(broker_url, "inspect", "active")] == [long], 10, "ops.sleep")
        assert reply(broker_url, "inspect", "query-task", long)[long][0] == "active"
        later = tq_json(broker_url, "call", "ops.add", "--args", "[1, 2]", "--countdown", "120")["id"]
        wait_for(
            lambda: [s["request"]["id"] for s in reply(broker_url, "inspect", "scheduled")] == [later],
            10,
            "the countdown task in Celery's schedule",
        )
        assert reply(broker_url, "inspect", "reserved") == []
        assert {"ops.sleep", "ops.add"} <= set(reply(broker_url, "inspect", "registered"))
        stats = reply(broker_url, "inspect", "stats")
        assert stats["pid"] == celery.pid and stats["pool"]["max-concurrency"] == 2
        assert [q["name"] for q in reply(broker_url, "inspect", "active-queues")] == ["celery"]
        assert isinstance(reply(broker_url, "inspect", "conf"), dict)

        # revoke a waiting task, terminate the running one
        assert tq_json(broker_url, "revoke", later, "--yes")["nodes"][0]["ok"]
        assert later in reply(broker_url, "inspect", "revoked")
        killed = tq_json(broker_url, "revoke", long, "--terminate", "--signal", "KILL", "--yes")
        assert killed["nodes"][0]["ok"] and killed["signal"] == "SIGKILL"
        assert tq_json(broker_url, "result", long, "--wait", "--timeout", "15")["state"] == "REVOKED"
        wait_for(lambda: reply(broker_url, "inspect", "active") == [], 10, "the terminated task to leave")

        # control: each command and Celery's reply
        assert "rate limit" in reply(broker_url, "control", "rate_limit", "ops.add", "10/s")["ok"]
        assert "time limits" in reply(broker_url, "control", "time-limit", "ops.add", "10", "5")["ok"]
        assert "extra" in reply(broker_url, "control", "add_consumer", "extra")["ok"]
        assert {q["name"] for q in reply(broker_url, "inspect", "active_queues")} == {"celery", "extra"}
        assert client.send_task("ops.add", [2, 3], queue="extra").get(timeout=15) == 5
        assert "extra" in reply(broker_url, "control", "cancel-consumer", "extra")["ok"]
        assert "disabled" in reply(broker_url, "control", "disable-events")["ok"]
        assert "enabled" in reply(broker_url, "control", "enable_events")["ok"]
        tq_json(broker_url, "control", "heartbeat", "-d", C1)
        assert "grow" in reply(broker_url, "control", "pool_grow", "1")["ok"]
        wait_for(lambda: len(reply(broker_url, "inspect", "stats")["pool"]["processes"]) == 3, 10, "3 processes")
        assert "shrink" in reply(broker_url, "control", "pool-shrink", "1")["ok"]
        wait_for(lambda: len(reply(broker_url, "inspect", "stats")["pool"]["processes"]) == 2, 10, "2 processes")
        assert "not enabled" in reply(broker_url, "control", "autoscale", "4", "1", code=1)
        assert "not enabled" in reply(broker_url, "control", "pool-restart", code=1)

        # every task event type a worker sends
        assert client.send_task("ops.add", [1, 1]).get(timeout=15) == 2
        failed = client.send_task("ops.fail", ["boom"])
        retried = client.send_task("ops.retry_once")
        rejected = client.send_task("ops.reject")
        assert retried.get(timeout=15) == 1
        wait_for(lambda: {"task-failed", "task-rejected"} <= tail.types(), 15, "failed and rejected events")

        # shutdown asks first, then stops the worker; tail hears it go
        dry = tq_json(broker_url, "control", "shutdown", "--dry-run", "-d", C1)
        assert dry == {"command": "shutdown", "arguments": {}, "dry_run": True, "nodes": [C1]}
        assert tq(broker_url, "control", "shutdown", "-d", C1).returncode == 1  # no --yes, no terminal
        assert tq_json(broker_url, "control", "shutdown", "--yes", "-d", C1)["nodes"][0]["ok"]
        assert celery.wait(30) == 0
        wait_for(lambda: "worker-offline" in tail.types(), 10, "worker-offline")
        assert tail.stop() == 0
        assert tail.types() == TASK_TYPES | WORKER_TYPES
        celery_events = [e for e in tail.events if e["hostname"] == C1]
        assert {e["type"] for e in celery_events} == (TASK_TYPES - {"task-sent"}) | WORKER_TYPES
        assert all(e["sw_ident"] == "py-celery" for e in celery_events if e["type"] == "worker-online")
        by_id = {(e["uuid"], e["type"]): e for e in tail.events}
        assert by_id[(long, "task-revoked")]["terminated"] is True
        assert by_id[(long, "task-received")]["name"] == "ops.sleep"
        assert "ValueError" in by_id[(failed.id, "task-failed")]["exception"]
        assert (retried.id, "task-retried") in by_id and (rejected.id, "task-rejected") in by_id
        assert tq(broker_url, "status").returncode == 69
    finally:
        tail.close()
        if celery.poll() is None:
            os.killpg(celery.pid, signal.SIGKILL)
            celery.wait(10)
        log.close()
        client.close()
