"""Every event type reaches a receiver (``tqctl tail``, a real process), from our workers, from our
``tqctl call`` client, and as Celery 5.4 and 5.7 publish them (the captured vectors, replayed on the bus).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from engine import App
from tests.integration.harness import ROOT, wait_for

pytestmark = pytest.mark.integration
HOST = socket.gethostname()
VECTORS = ROOT / "tests" / "vectors"  # celery-wire.md §9
WORKER_TYPES = {"worker-online", "worker-heartbeat", "worker-offline"}
TASK_TYPES = {
    "task-sent",
    "task-received",
    "task-started",
    "task-succeeded",
    "task-failed",
    "task-retried",
    "task-revoked",
    "task-rejected",
}


class Tail:
    """``tqctl tail --json --heartbeats`` as a process; its JSON Lines are read on a thread."""

    def __init__(self, url: str, *args: str) -> None:
        env = {**os.environ, "TQCTL_BROKER": url, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tqctl", "tail", "--json", "--heartbeats", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # As at a terminal, Ctrl-C reaches it even when this suite runs as a background job
            # (a non-interactive shell starts those with SIGINT ignored, and children inherit that).
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        assert "following events" in self.proc.stderr.readline()  # subscribed: nothing after this is missed
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def seen(self) -> list[dict[str, Any]]:
        while not self.lines.empty():
            self.events.append(json.loads(self.lines.get()))  # every line is one JSON document
        return self.events

    def types(self) -> set[str]:
        return {e["type"] for e in self.seen()}

    def stop(self) -> int:
        """Ctrl-C, as a user stops it: a clean exit 0."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(10)
        self.seen()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def tail(broker_url: str):  # noqa: ANN201
    started: list[Tail] = []

    def start(*args: str) -> Tail:
        started.append(Tail(broker_url, *args))
        return started[-1]

    yield start
    for t in started:
        t.close()


def tq(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TQCTL_BROKER": url, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "tqctl", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )


@pytest.fixture
def client(broker_url: str) -> Iterator[App]:
    """A client app on this test's server; closed after, with its task-sent flusher thread."""
    app = App("client", broker=broker_url, backend=broker_url)
    yield app
    app.close()


def test_every_event_type_from_our_worker_and_client_reaches_tail(
    broker_url: str, start_worker, tail, client: App
) -> None:
    t = tail()
    worker = start_worker("-P", "threads", name="e1", app="tests.apps.guarded")
    called = tq(broker_url, "call", "guarded.echo", "--args", "[5]")  # a client: task-sent
    assert called.returncode == 0
    echo_id = called.stdout.strip()
    assert client.AsyncResult(echo_id).get(timeout=10) == 5
    failed = client.send_task("guarded.fail_once", [str(Path(worker.log_path).parent / "marker")])
    retried = client.send_task("guarded.retry_once")
    rejected = client.send_task("guarded.reject")
    assert retried.get(timeout=10) == 1
    doomed = "revoked-before-sent"
    assert tq(broker_url, "revoke", doomed, "--yes").returncode == 0
    client.send_task("guarded.echo", [1], task_id=doomed)
    wait_for(
        lambda: {"task-failed", "task-rejected", "task-revoked", "worker-heartbeat"} <= t.types(),
        15,
        "failed, rejected, revoked and heartbeat events",
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    wait_for(lambda: "worker-offline" in t.types(), 10, "worker-offline")
    assert t.stop() == 0
    assert t.types() == TASK_TYPES | WORKER_TYPES
    by_task: dict[str, list[dict[str, Any]]] = {}
    for event in t.events:
        assert event["timestamp"].endswith("+00:00") and event["received_at"].endswith("+00:00")
        by_task.setdefault(event["uuid"], []).append(event)
        if event["type"].startswith("worker-"):
            assert event["hostname"] == f"e1@{HOST}"
    sent = next(e for e in by_task[echo_id] if e["type"] == "task-sent")
    assert sent["hostname"].startswith("gen") and sent["args"] == "(5,)"
    # The client publishes task-sent just after the message (as Celery's does), so the worker's events may
    # come first; the worker's own come in order.
    assert sorted(e["type"] for e in by_task[echo_id]) == [
        "task-received",
        "task-sent",
        "task-started",
        "task-succeeded",
    ]
    assert [e["type"] for e in by_task[echo_id] if e["type"] != "task-sent"] == [
        "task-received",
        "task-started",
        "task-succeeded",
    ]
    assert all(e["name"] == "guarded.echo" for e in by_task[echo_id])  # named once, remembered by tail
    # (not the last event of the task: the client's task-sent may come after the worker's)
    succeeded = next(e for e in by_task[echo_id] if e["type"] == "task-succeeded")
    assert succeeded["result"] == "5" and succeeded["state"] == "SUCCESS"
    assert "RuntimeError" in next(e for e in by_task[failed.id] if e["type"] == "task-failed")["exception"]
    assert [e["type"] for e in by_task[retried.id]].count("task-retried") == 1
    assert next(e for e in by_task[rejected.id] if e["type"] == "task-rejected")["requeue"] is False
    assert next(e for e in by_task[doomed] if e["type"] == "task-revoked")["state"] == "REVOKED"


def test_events_can_be_turned_off_and_on_again(broker_url: str, start_worker, tail, client: App) -> None:
    start_worker("-P", "threads", name="e2")
    t = tail()
    assert json.loads(tq(broker_url, "control", "disable-events", "--json").stdout)["count"] == 1
    quiet = client.send_task("tests.apps.shop.add", [1, 1])
    assert quiet.get(timeout=10) == 2
    assert json.loads(tq(broker_url, "control", "enable-events", "--json").stdout)["count"] == 1
    loud = client.send_task("tests.apps.shop.add", [2, 2])
    assert loud.get(timeout=10) == 4
    wait_for(
        lambda: any(e["uuid"] == loud.id and e["type"] == "task-succeeded" for e in t.seen()),
        10,
        "the events of the task sent after enable-events",
    )
    assert t.stop() == 0
    # disable-events silences the worker; the client's own task-sent still announces the send
    assert [e["type"] for e in t.events if e["uuid"] == quiet.id] == ["task-sent"]


def _vector_events() -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """(file, raw envelope, events in it) for every captured event message."""
    found = []
    for path in sorted(VECTORS.glob("event-*.json")):
        doc = json.loads(path.read_text())
        if "raw" in doc:
            body = json.loads(base64.b64decode(doc["raw"]["body"]))
            found.append((path.name, doc, body if isinstance(body, list) else [body]))
    return found


def test_celery_54_and_57_event_messages_replayed_on_the_bus_reach_tail(
    broker_url: str, tail, redis_client: redis.Redis
) -> None:
    vectors = _vector_events()
    assert any("5.4" in doc["captured_with"] for _, doc, _ in vectors)
    expected = [event for _, _, events in vectors for event in events]
    t = tail()
    for _name, doc, _ in vectors:
        redis_client.publish(doc["redis"]["channel"], json.dumps(doc["raw"]))
    wait_for(lambda: len(t.seen()) >= len(expected), 10, f"{len(expected)} replayed events")
    assert t.stop() == 0
    assert [(e["type"], e["uuid"], e["hostname"]) for e in t.events] == [
        (e["type"], e.get("uuid"), e["hostname"]) for e in expected
    ]
    assert t.types() == TASK_TYPES | WORKER_TYPES
    old = next(e for e in t.events if e["hostname"] == "w3old@vm")  # the Celery 5.4 worker (int utcoffset)
    assert old["type"] == "worker-online" and old["sw_ver"] == "5.4.0"
    for ours, theirs in zip(t.events, expected, strict=True):
        assert ours["timestamp"] == _iso(theirs["timestamp"])


def _iso(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat()
