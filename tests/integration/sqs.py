"""A private SQS endpoint for the SQS tests: ``moto_server`` (moto[server]) on a loopback port.

The server runs as our child for the whole session and is stopped at the end. Each test gets
its own queue name prefix (kombu's ``queue_name_prefix``), so no test sees another's queues and
none needs SQS's once-a-minute purge. Workers and clients find the endpoint and the (dummy)
credentials in the AWS_* variables boto3 reads; the broker URL is plain ``sqs://``.
"""

from __future__ import annotations

import functools
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

from tests.integration.harness import ChildProcess
from tests.integration.servers import PortPicker, free_ports, ready_on_a_free_port

REGION = "us-east-1"
VISIBILITY = 3  # seconds: a killed worker's late-ack message comes back this soon


class MotoChild(ChildProcess):
    """``moto_server`` on one port, with a log of its own: it exits saying "Address already in
    use" when another program took the port after it was chosen, and logs the address it serves
    once it listens."""

    def __init__(self, port: int, directory: Path) -> None:
        self.ready_marker = f"Running on http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        super().__init__(argv, directory / f"moto-{port}.out", dict(os.environ))


@dataclass
class MotoSqs:
    directory: Path
    pick_ports: PortPicker = field(default=free_ports, repr=False)
    port: int = 0  # chosen by start
    child: MotoChild | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> MotoSqs:
        """On a fresh port (again on another when that one was taken before moto bound it), then
        until its SQS answers: the log line comes before the first request is served."""
        launch = functools.partial(MotoChild, directory=self.directory)
        self.child, self.port = ready_on_a_free_port(launch, timeout, self.pick_ports)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client().list_queues()
                return self
            except Exception:
                if self.child.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server not serving SQS:\n{self.log()[-3000:]}") from None
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
        return self.child.log() if self.child is not None else ""

    def stop(self) -> None:
        child, self.child = self.child, None
        if child is None:
            return
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
            try:
                child.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        child.close()  # kills what is left of its group


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
