"""A private RabbitMQ node for the AMQP tests: Debian's ``rabbitmq-server``, no systemd, loopback only.

Everything the node writes lives in one temporary folder: its database (``RABBITMQ_MNESIA_BASE``),
logs, config, plugin list and the Erlang cookie (``HOME``). It has its own node name, AMQP and
distribution ports, and its own ``epmd`` on a private port (``ERL_EPMD_PORT``), so it never meets
a system node or another test session's. The node runs in the foreground as our child (the
script's own signal handling stops it cleanly on SIGTERM); the ``epmd`` it daemonised is told to
quit at the end. Ready means an AMQP login succeeds, not only that the Erlang node answers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import amqp
import pytest

from tests.integration.servers import free_port, make_certs

SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the Debian package's, without the su wrapper


def available() -> bool:
    return os.path.exists(SCRIPT) and shutil.which("epmd") is not None


@dataclass
class RabbitMQ:
    directory: Path
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    epmd_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started_in: float = 0.0  # seconds from launch to the first AMQP login, for the CI budget
    tls: dict[str, str] | None = None  # make_certs' paths: a TLS listener on ``tls_port`` too
    tls_port: int = field(default_factory=free_port)
    management: bool = False  # the management plugin (its HTTP API on ``api_port``): slower to start
    api_port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/"

    @property
    def node(self) -> str:
        return f"tqtest{self.port}@localhost"

    def env(self) -> dict[str, str]:
        d = self.directory
        return {
            **os.environ,
            "HOME": str(d / "home"),  # the Erlang cookie is written here
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),  # not /etc/rabbitmq's
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def start(self, timeout: float = 60.0) -> RabbitMQ:
        try:
            return self._start(timeout)
        except RuntimeError as exc:
            if "nodistribution" not in str(exc):
                raise
        # Erlang's distribution did not come up: the private epmd or distribution port was taken
        # between choosing it and binding it (servers and clients start all the time in a test
        # run; seen once in CI). Once more on fresh ones; the AMQP port stays, for restarts.
        self._kill_epmd()
        self.epmd_port, self.dist_port = free_port(), free_port()
        return self._start(timeout)

    def _start(self, timeout: float) -> RabbitMQ:
        d = self.directory
        (d / "home").mkdir(parents=True, exist_ok=True)
        conf = (
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"  # guest may log in (it is loopback-only anyway)
            "log.console = false\n"
            "log.file.level = info\n"
        )
        if self.tls is not None:
            conf += (
                f"listeners.ssl.1 = 127.0.0.1:{self.tls_port}\n"
                f"ssl_options.cacertfile = {self.tls['ca']}\n"
                f"ssl_options.certfile = {self.tls['server_cert']}\n"
                f"ssl_options.keyfile = {self.tls['server_key']}\n"
                "ssl_options.verify = verify_peer\n"
                "ssl_options.fail_if_no_peer_cert = false\n"
            )
        if self.management:
            conf += f"management.tcp.port = {self.api_port}\nmanagement.tcp.ip = 127.0.0.1\n"
        (d / "rabbitmq.conf").write_text(conf)
        (d / "rabbitmq-env.conf").write_text("")
        (d / "enabled_plugins").write_text("[rabbitmq_management].\n" if self.management else "[].\n")
        began = time.monotonic()
        with open(d / "server.out", "ab") as out:
            self.proc = subprocess.Popen(
                [SCRIPT],
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready(timeout)
        self.started_in = time.monotonic() - began
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                conn = amqp.Connection(f"127.0.0.1:{self.port}", userid="guest", password="guest", connect_timeout=1)
                conn.connect()
                conn.close()
                if self.management and not self._api_up():
                    raise ConnectionError("the management API is not up yet")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"rabbitmq-server not ready after {timeout}s:\n{self.log()[-3000:]}") from None
                time.sleep(0.1)

    def _api_up(self) -> bool:
        try:
            urllib.request.urlopen(self.api_url + "overview", timeout=1).close()
        except urllib.error.HTTPError:
            return True  # it answers (asking for a login)
        except OSError:
            return False
        return True

    def log(self) -> str:
        parts = [self.directory / "server.out", *sorted((self.directory / "log").glob("*.log"))]
        return "\n".join(p.read_text(errors="replace") for p in parts if p.exists())

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: the script stops the node (queues and durable messages are kept on disk)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.proc = None

    def close(self) -> None:
        """Stop the node, then the private epmd it started."""
        try:
            self.stop()
        finally:
            self._kill_epmd()

    def _kill_epmd(self) -> None:
        """Best effort: what answers on the port may not be our epmd (it may never have started)."""
        epmd = shutil.which("epmd") or "epmd"
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                [epmd, "-port", str(self.epmd_port), "-kill"],
                env=self.env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=10,
                check=False,
            )


# Queues the AMQP tests use, deleted before each test so none sees another's messages.
TEST_QUEUES = (
    *("celery", "tqctl.dead", "high", "low", "other", "ours", "theirs"),
    *("extra", "later", "jobs", "orphan", "idle", "default"),  # the ops CLI and console tests'
)


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    """One private RabbitMQ node for the session (skipped where the package is not installed)."""
    if not available():
        pytest.skip("Debian's rabbitmq-server is not installed")
    directory = tmp_path_factory.mktemp("rabbitmq")
    node = RabbitMQ(directory, tls=make_certs(directory / "certs"))
    try:
        node.start()
        yield node
    finally:
        node.close()


@pytest.fixture
def amqp_url(rabbitmq: RabbitMQ) -> str:
    """The session node, with the tests' queues deleted first."""
    conn = amqp.Connection(f"127.0.0.1:{rabbitmq.port}", userid="guest", password="guest", connect_timeout=5)
    conn.connect()
    try:
        channel = conn.channel()
        for queue in TEST_QUEUES:
            channel.queue_delete(queue)
    finally:
        conn.close()
    return rabbitmq.url


@pytest.fixture
def amqp_client(amqp_url: str, redis_url: str) -> Iterator[Any]:
    """A client app in the test process, on the private node with results on the Redis backend
    (sending through ``tqctl call`` costs an interpreter each time)."""
    from engine import App

    app = App("client", broker=amqp_url, backend=redis_url)
    try:
        yield app
    finally:
        app.close()
