"""A private RabbitMQ node for the AMQP tests: Debian's ``rabbitmq-server``, no systemd, loopback only.

Everything the node writes lives in one temporary folder: its database (``RABBITMQ_MNESIA_BASE``),
logs, config, plugin list and the Erlang cookie (``HOME``). It has its own node name, AMQP and
distribution ports, and its own ``epmd`` on a private port (``ERL_EPMD_PORT``), so it never meets
a system node or another test session's. The node runs in the foreground as our child (the
script's own signal handling stops it cleanly on SIGTERM); the ``epmd`` it daemonised is told to
quit at the end. Ready means an AMQP login succeeds and the node's own log says its boot completed
with every listener bound, not only that the Erlang node answers.

Its five ports are chosen together (so they differ) and may be taken by another process before the
node binds them (servers and clients start all the time under xdist): a first start that fails on a
taken port is tried again on fresh ones (``START_TRIES`` in all). A restart keeps the client-facing
ports, which clients know; only the distribution ones can move then.
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import amqp
import pytest

from tests.integration.servers import START_TRIES, PortPicker, PortTaken, free_ports, make_certs

SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the Debian package's, without the su wrapper


PORTS = ("port", "dist_port", "epmd_port", "tls_port", "api_port")
DISTRIBUTION = ("dist_port", "epmd_port")  # what a restart may move: no client knows them
# The node's log on a listener's taken port: ``listen_error ... eaddrinuse`` (for the TLS one the
# node even boots on without it). The distribution's are matched in ``_raise_if_port_taken``.
LISTENER_TAKEN = "eaddrinuse"
BOOTED = "Server startup complete"


class NodePortTaken(PortTaken):
    """Which ports a fresh pick could free, and whether the epmd on the old port is ours to stop."""

    def __init__(self, what: str, movable: Sequence[str], epmd_ours: bool = True) -> None:
        super().__init__(what)
        self.movable = tuple(movable)
        self.epmd_ours = epmd_ours


def available() -> bool:
    return os.path.exists(SCRIPT) and shutil.which("epmd") is not None


@dataclass
class RabbitMQ:
    directory: Path
    port: int = 0  # 0: chosen by ``pick_ports``, like the other ports
    dist_port: int = 0
    epmd_port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started_in: float = 0.0  # seconds from launch to the first AMQP login, for the CI budget
    tls: dict[str, str] | None = None  # make_certs' paths: a TLS listener on ``tls_port`` too
    tls_port: int = 0
    management: bool = False  # the management plugin (its HTTP API on ``api_port``): slower to start
    api_port: int = 0
    pick_ports: PortPicker = field(default=free_ports, repr=False)
    started: bool = field(default=False, repr=False)
    log_marks: dict[Path, int] = field(default_factory=dict, repr=False)  # log sizes at this launch

    def __post_init__(self) -> None:
        self._repick([name for name in PORTS if not getattr(self, name)])

    def _repick(self, names: Sequence[str]) -> None:
        """Fresh ports for ``names``, distinct from each other and from the ports kept."""
        kept = {getattr(self, name) for name in PORTS if name not in names}
        fresh = [port for port in self.pick_ports(len(names) + len(kept)) if port not in kept]
        for name, port in zip(names, fresh, strict=False):
            setattr(self, name, port)

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
            "ERL_CRASH_DUMP": str(d / "erl_crash.dump"),  # a failed boot's dump, not in the checkout
        }

    def start(self, timeout: float = 60.0) -> RabbitMQ:
        """Start and wait until ready; on a taken port, again on fresh ones (see the module's note).
        If it still fails, nothing of it is left running."""
        movable = DISTRIBUTION if self.started else PORTS
        for attempt in range(1, START_TRIES + 1):
            try:
                self._start(timeout)
            except NodePortTaken as exc:
                self.stop()
                if exc.epmd_ours:
                    self._kill_epmd()
                if attempt == START_TRIES or not set(exc.movable) <= set(movable):
                    where = f"start {attempt} of {START_TRIES}; logs in {self.directory}"
                    raise RuntimeError(f"rabbitmq-server: {exc} ({where})") from None
                self._repick(movable)
                continue
            except BaseException:
                self.close()
                raise
            self.started = True
            return self
        raise AssertionError("unreachable")

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
        self.log_marks = {path: path.stat().st_size for path in self._log_paths()}
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
            exited = self.proc is not None and self.proc.poll() is not None  # before reading its log
            self._raise_if_port_taken()
            if exited:
                assert self.proc is not None
                raise RuntimeError(f"rabbitmq-server exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            if self._answers():
                self._raise_if_port_taken()  # a listener failed just before the boot completed
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"rabbitmq-server not ready after {timeout}s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        """An AMQP login works and the node's own log says its boot completed: the login alone
        could reach whoever took the port, and a failed TLS listener does not stop the boot."""
        try:
            conn = amqp.Connection(f"127.0.0.1:{self.port}", userid="guest", password="guest", connect_timeout=1)
            conn.connect()
            conn.close()
        except Exception:
            return False
        return BOOTED in self._new_log() and (not self.management or self._api_up())

    def _raise_if_port_taken(self) -> None:
        text = self._new_log()
        if LISTENER_TAKEN in text:
            raise NodePortTaken("a listener's port was taken (eaddrinuse)", PORTS)
        if self.proc is not None and self.proc.poll() is not None:
            if "dist_port_already_used" in text:
                raise NodePortTaken("the Erlang distribution port was taken", DISTRIBUTION)
            if "nodistribution" in text:  # epmd could not listen: what holds its port is not ours
                raise NodePortTaken("no Erlang distribution: epmd's port was taken", DISTRIBUTION, epmd_ours=False)

    def _api_up(self) -> bool:
        try:
            urllib.request.urlopen(self.api_url + "overview", timeout=1).close()
        except urllib.error.HTTPError:
            return True  # it answers (asking for a login)
        except OSError:
            return False
        return True

    def _log_paths(self) -> list[Path]:
        parts = [self.directory / "server.out", *sorted((self.directory / "log").glob("*.log"))]
        return [p for p in parts if p.exists()]

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self._log_paths())

    def _new_log(self) -> str:
        """What this launch logged: a restart appends to the same files."""
        return "\n".join(p.read_bytes()[self.log_marks.get(p, 0) :].decode(errors="replace") for p in self._log_paths())

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
