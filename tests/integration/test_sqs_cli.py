"""What an SQS broker cannot do, said in one line: remote control, and an endpoint that is not there."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, WorkerProcess
from tests.integration.servers import free_port, free_ports
from tests.integration.sqs import MotoSqs, SqsTarget, moto_sqs_server, sqs_target  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def tqctl(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TQCTL_BROKER", None)
    return subprocess.run(
        [sys.executable, "-m", "tqctl", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("argv", [["inspect", "ping"], ["control", "shutdown"], ["status"], ["workers"]])
def test_remote_control_on_sqs_is_refused_in_one_line(sqs: SqsTarget, argv: list[str]) -> None:
    done = tqctl(*argv, "--broker", sqs.url)
    assert done.returncode != 0
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and "does not exist on an SQS broker, as in Celery" in lines[0]


def test_worker_on_an_unreachable_sqs_endpoint_fails_in_one_line(redis_url: str, tmp_path: Path) -> None:
    url = f"sqs://AKIDUMMY:s3cr3tdummy@127.0.0.1:{free_port()}"  # nothing listens there
    proc = WorkerProcess(
        url, ["-l", "info"], tmp_path / "w.log", {"SQS_TEST_BACKEND": redis_url}, app="tests.apps.sqs_app"
    )
    try:
        assert proc.wait(60) != 0
    finally:
        proc.close()
    out = proc.log()
    errors = [line for line in out.splitlines() if line.startswith("tqctl: error:")]
    assert len(errors) == 1 and "unreachable" in errors[0] and "sqs://AKIDUMMY:****@" in errors[0]
    assert "Traceback" not in out and "s3cr3tdummy" not in out


def test_worker_on_sqs_without_a_redis_backend_is_refused_in_one_line(sqs: SqsTarget, tmp_path: Path) -> None:
    proc = WorkerProcess(sqs.url, ["-l", "info"], tmp_path / "w.log", sqs.env(), app="tests.apps.sqs_app")
    try:
        assert proc.wait(60) != 0
    finally:
        proc.close()
    out = proc.log().strip()
    assert "needs a Redis result backend" in out and "Traceback" not in out


def test_an_unquoted_secret_key_is_refused_without_showing_it(redis_url: str, tmp_path: Path) -> None:
    url = "sqs://AKIDUMMY:abc/s3cr3tdummy@"  # Celery's docs: quote the key; unquoted it parses wrong
    proc = WorkerProcess(
        url, ["-l", "info"], tmp_path / "w.log", {"SQS_TEST_BACKEND": redis_url}, app="tests.apps.sqs_app"
    )
    try:
        assert proc.wait(60) != 0
    finally:
        proc.close()
    out = proc.log()
    assert out.count("tqctl: error: the sqs:// URL does not parse: quote the access key and secret key") == 1
    assert "Traceback" not in out and "s3cr3tdummy" not in out


def test_a_worker_without_aws_credentials_is_refused_in_one_line(
    sqs: SqsTarget, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "SQS_TEST_BACKEND": redis_url,
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        **sqs.env(),
    }
    proc = WorkerProcess(sqs.url, ["-l", "info"], tmp_path / "w.log", env, app="tests.apps.sqs_app")
    try:
        assert proc.wait(60) != 0
    finally:
        proc.close()
    out = proc.log()
    errors = [line for line in out.splitlines() if line.startswith("tqctl: error:")]
    assert errors == ["tqctl: error: broker sqs://: Unable to locate credentials"] and "Traceback" not in out


def test_queues_purge_and_history_on_sqs(
    sqs: SqsTarget, redis_url: str, redis_client: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tqctl queues`` and ``purge`` read SQS's own counts, and ``tasks`` the history the worker
    keeps on the Redis result backend. (The CLI has no transport options, so this test uses the
    endpoint's unprefixed ``celery`` queue, which no other test touches.)"""
    import json

    from engine import App

    monkeypatch.setenv("TQCTL_BACKEND", redis_url)
    options = {k: v for k, v in sqs.options.items() if k != "queue_name_prefix"}
    client = App("sqs_cli", broker=sqs.url, backend=redis_url)
    client.conf.broker_transport_options = options
    try:
        tqctl("purge", "celery", "--yes", "--broker", sqs.url)  # (empty already, unless a run was cut short)
        for i in range(3):
            client.send_task("tests.apps.sqs_app.add", args=[i, i])
        shown = json.loads(tqctl("queues", "--broker", sqs.url, "--json").stdout)
        row = next(q for q in shown["queues"] if q["name"] == "celery")
        assert (row["depth"], row["consumer_count"], shown["warnings"]) == (3, None, [])
        purged = tqctl("purge", "celery", "--yes", "--broker", sqs.url, "--json")
        assert purged.returncode == 0 and json.loads(purged.stdout) == {"queue": "celery", "purged": 3}
        assert (
            sqs.server.client().get_queue_attributes(
                QueueUrl=sqs.server.client().get_queue_url(QueueName="celery")["QueueUrl"],
                AttributeNames=["ApproximateNumberOfMessages"],
            )["Attributes"]["ApproximateNumberOfMessages"]
            == "0"
        )

        env = {"SQS_TEST_BACKEND": redis_url, "SQS_TEST_OPTIONS": json.dumps(options)}
        worker = WorkerProcess(
            sqs.url, ["-l", "info", "-n", "s1@%h"], tmp_path / "w.log", env, app="tests.apps.sqs_app"
        )
        try:
            worker.wait_ready(60)
            result = client.send_task("tests.apps.sqs_app.add", args=[20, 22])
            assert result.get(timeout=60) == 42
            worker.signal(signal.SIGTERM)  # a warm stop writes what it has buffered
            assert worker.wait(60) == 0
        finally:
            worker.close()
        listed = tqctl("tasks", "--broker", sqs.url, "--json")
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        rows = rows["tasks"] if isinstance(rows, dict) else rows
        assert [(r["id"], r["state"]) for r in rows] == [(result.id, "SUCCESS")]
        tail = tqctl("tail", "--broker", sqs.url)
        assert tail.returncode != 0 and (tail.stdout + tail.stderr).strip().count("\n") == 0
        assert "not available on an SQS broker" in tail.stderr
    finally:
        client.close()


def test_an_sqs_endpoint_that_never_answers_fails_in_seconds(tmp_path: Path) -> None:
    """``queues --timeout 2``, ``purge`` and ``dead ls`` against an endpoint that takes connections
    and never answers: one line within seconds (each call gave up only after boto's 30 s read
    timeout, retried: about 90 s each, whatever ``--timeout`` said)."""
    import socket
    import threading
    import time

    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # kept open, never answered
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"sqs://AKIDUMMY:s3cr3tdummy@127.0.0.1:{server.getsockname()[1]}"
    try:
        for argv in (["queues", "--timeout", "2"], ["purge", "celery", "--yes", "--timeout", "2"], ["dead", "ls"]):
            began = time.monotonic()
            done = tqctl(*argv, "--broker", url)
            took = time.monotonic() - began
            out = (done.stdout + done.stderr).strip()
            assert done.returncode == 1 and took < 30, (argv, took, out)
            assert out.count("\n") == 0 and "unreachable" in out and "s3cr3tdummy" not in out, out
    finally:
        stop.set()
        thread.join(5)
        server.close()
        for conn in held:
            conn.close()


def test_the_sqs_endpoint_on_a_taken_port_comes_up_on_a_fresh_one(tmp_path: Path, held_port: int) -> None:
    """Before: moto_server exited on "Address already in use" when its port was taken between
    choosing and binding it, and the whole SQS session errored. Now it is launched again on
    another port. The first port it is handed is held by a real listener."""
    picked: list[int] = []

    def pick(count: int) -> list[int]:
        picked.append(held if not picked else free_ports(count)[0])
        return picked[-1:]

    held = held_port
    server = MotoSqs(tmp_path, pick_ports=pick)
    try:
        server.start()
        assert picked[0] == held and server.port == picked[1]
        assert "already in use" in (tmp_path / f"moto-{held}.out").read_text()
        assert server.client().list_queues()["ResponseMetadata"]["HTTPStatusCode"] == 200
    finally:
        server.stop()
