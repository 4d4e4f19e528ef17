"""A private SQS endpoint for the SQS tests: ``moto_server`` (moto[server]) on a loopback port.

The server runs as our child for the whole session and is stopped at the end. Each test gets
its own queue name prefix (kombu's ``queue_name_prefix``), so no test sees another's queues and
none needs SQS's once-a-minute purge. Workers and clients find the endpoint and the (dummy)
credentials in the AWS_* variables boto3 reads; the broker URL is plain ``sqs://``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.servers import free_port

REGION = "us-east-1"
VISIBILITY = 3  # seconds: a killed worker's late-ack message comes back this soon


@dataclass
class MotoSqs:
    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> MotoSqs:
        with open(self.directory / "moto.out", "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                self.client().list_queues()
                return self
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server not ready after {timeout}s:\n{self.log()[-3000:]}") from None
                time.sleep(0.1)

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "sqs",
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def log(self) -> str:
        path = self.directory / "moto.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@dataclass
class SqsTarget:
    """One test's view of the endpoint: its prefix, its transport options, its environment."""

    server: MotoSqs
    prefix: str
    url: str = "sqs://"

    @property
    def options(self) -> dict[str, Any]:
        return {
            "region": REGION,
            "queue_name_prefix": self.prefix,
            "visibility_timeout": VISIBILITY,
            "polling_interval": 0.1,
            "wait_time_seconds": 1,
        }

    def env(self) -> dict[str, str]:
        """For workers: the app reads its transport options from SQS_TEST_OPTIONS."""
        return {"SQS_TEST_OPTIONS": json.dumps(self.options)}

    def queue_url(self, name: str) -> str:
        return str(self.server.client().get_queue_url(QueueName=f"{self.prefix}{name}")["QueueUrl"])

    def counts(self, name: str) -> tuple[int, int]:
        """(visible, in flight) messages of a queue: both 0 only once every message is deleted."""
        attrs = self.server.client().get_queue_attributes(
            QueueUrl=self.queue_url(name),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture(scope="session", name="moto_sqs")
def moto_sqs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoSqs]:
    """One private moto SQS endpoint for the session (skipped where moto[server] is not installed)."""
    for module, extra in (("moto", "test"), ("flask", "test"), ("boto3", "sqs")):  # moto[server] needs flask
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (the {extra} extra has it)")
    server = MotoSqs(tmp_path_factory.mktemp("moto"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(name="sqs")
def sqs_target(moto_sqs: MotoSqs, monkeypatch: pytest.MonkeyPatch) -> SqsTarget:
    """The session endpoint, with queues of this test's own and the AWS_* variables set."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_sqs.endpoint)
    return SqsTarget(moto_sqs, f"t{uuid.uuid4().hex[:10]}-")
