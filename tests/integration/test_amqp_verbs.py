"""``tqctl tail / tasks / task / failures / retry / revoke / call / result`` on the private
RabbitMQ, with a real tqctl worker whose history, failure inbox and revokes are on the Redis
result backend (TQCTL_BACKEND for tqctl, the app's result_backend for the worker)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.history import History
from tests.integration.harness import ROOT, WorkerProcess, reaped, wait_for

pytestmark = pytest.mark.integration
APP = "tests.apps.amqp_ops_app"


def tq(amqp_url: str, backend: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TQCTL_BROKER": amqp_url, "PYTHONPATH": str(ROOT)}
    env.pop("TQCTL_BACKEND", None)
    if backend:
        env["TQCTL_BACKEND"] = backend
    return subprocess.run(
        [sys.executable, "-m", "tqctl", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def tq_json(amqp_url: str, backend: str, *args: str) -> Any:
    proc = tq(amqp_url, backend, *args, "--json")
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return json.loads(proc.stdout)


@pytest.fixture
def worker(amqp_url: str, redis_url: str, redis_client: object, tmp_path: Path) -> Iterator[WorkerProcess]:
    env = {"AMQP_TEST_BACKEND": redis_url}
    proc = WorkerProcess(amqp_url, ["-n", "verbs@%h", "-c", "1", "-l", "info"], tmp_path / "w.log", env, app=APP)
    try:
        yield proc.wait_ready(60)
    finally:
        proc.close()


def call(amqp_url: str, backend: str, name: str, *args: Any) -> str:
    sent = tq_json(amqp_url, backend, "call", f"{APP}.{name}", "--args", json.dumps(list(args)))
    return str(sent["id"])


def wait_result(amqp_url: str, backend: str, task_id: str) -> dict[str, Any]:
    return tq_json(amqp_url, backend, "result", task_id, "--wait", "--timeout", "60")


def test_tail_history_failures_and_retry_on_amqp(
    amqp_url: str, redis_url: str, redis_client: Any, worker: WorkerProcess, amqp_client: Any
) -> None:
    # tail: the celeryev exchange's events, live (sent until tail has heard one, so no race with its subscribe)
    tail = subprocess.Popen(
        [sys.executable, "-m", "tqctl", "tail", "--count", "5", "--state", "SUCCESS", "--json", "--for", "90"],
        cwd=ROOT,
        env={**os.environ, "TQCTL_BROKER": amqp_url, "TQCTL_BACKEND": redis_url, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def heard() -> bool:  # one more task each time until tail has heard one succeed
        return tail.poll() is not None or (
            bool(amqp_client.send_task(f"{APP}.add", [2, 3])) and tail.poll() is not None
        )

    with reaped(tail):
        wait_for(heard, 90, "tail to print a task-succeeded event")
        out, err = tail.communicate(timeout=10)
    assert tail.returncode == 0, err
    # Up to 4 tasks (the -c 1 worker's prefetch) may have been received before tail subscribed:
    # their successes carry no name (never seen). The fifth was received after: it has one.
    events = [json.loads(line) for line in out.strip().splitlines()]
    assert len(events) == 5 and {e["state"] for e in events} == {"SUCCESS"}
    assert events[-1]["name"] == f"{APP}.add"

    failed = call(amqp_url, redis_url, "charge", 7)
    assert wait_result(amqp_url, redis_url, failed)["state"] == "FAILURE"
    # the worker flushes its history off the hot path: wait for the record, then read it three ways
    history = History(redis_client)
    wait_for(lambda: history.failure(failed) is not None, 60, "the worker to record the failure")
    assert [r["id"] for r in tq_json(amqp_url, redis_url, "tasks", "--state", "FAILURE")["tasks"]] == [failed]
    detail = tq_json(amqp_url, redis_url, "task", failed)
    assert detail["state"] == "FAILURE" and detail["name"] == f"{APP}.charge"
    groups = tq_json(amqp_url, redis_url, "failures")["groups"]
    assert [(g["task_name"], g["exc_type"], g["open"]) for g in groups] == [(f"{APP}.charge", "ValueError", 1)]

    retried = tq_json(amqp_url, redis_url, "retry", failed, "--yes")
    assert [r["retry_of"] for r in retried["retried"]] == [failed]
    again = retried["retried"][0]["id"]
    assert wait_result(amqp_url, redis_url, again)["state"] == "FAILURE"  # the same message ran again


def test_revoke_on_amqp_is_kept_for_a_task_sent_later(
    amqp_url: str, redis_url: str, worker: WorkerProcess, amqp_client: Any
) -> None:
    """The revoke is stored on the result backend, so a task whose message comes after it never runs."""
    node = f"verbs@{socket.gethostname()}"
    assert tq_json(amqp_url, redis_url, "health", "-d", node, "-t", "20")["healthy"] is True
    revoked = tq_json(amqp_url, redis_url, "revoke", "doomed-1", "--yes", "-t", "5")
    assert [row["ok"] for row in revoked["nodes"]] == [True]
    doomed = amqp_client.send_task(f"{APP}.add", [1, 1], task_id="doomed-1")
    sentinel = amqp_client.send_task(f"{APP}.add", [2, 2])
    assert sentinel.get(timeout=60) == 4
    assert doomed.state == "REVOKED"


def test_verbs_needing_stored_state_name_the_missing_backend(amqp_url: str) -> None:
    for argv, what in ((["revoke", "x", "--yes"], "revokes (stored"), (["tasks"], "task history")):
        proc = tq(amqp_url, None, *argv)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr
        assert what in lines[0] and "AMQP broker" in lines[0] and "TQCTL_BACKEND" in lines[0]


def test_send_event_from_a_task_on_amqp(amqp_url: str, redis_url: str, worker: WorkerProcess) -> None:
    """``self.send_event`` inside a task uses the worker's own channel: on AMQP the celeryev
    exchange (before: it opened Redis pub/sub at the amqp:// URL and the task failed)."""
    sent = call(amqp_url, redis_url, "progress", 3)
    done = wait_result(amqp_url, redis_url, sent)
    assert (done["state"], done["result"]) == ("SUCCESS", 3), done
