"""What an SQS broker cannot do, said in one line: remote control, and an endpoint that is not there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, WorkerProcess
from tests.integration.servers import free_port
from tests.integration.sqs import SqsTarget, moto_sqs_server, sqs_target  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def tqctl(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TQCTL_BROKER", None)
    return subprocess.run(
        [sys.executable, "-m", "tqctl", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("argv", [["inspect", "ping"], ["control", "shutdown"], ["status"]])
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
