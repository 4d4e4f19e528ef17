"""Real parts for the stall, frozen-worker, orphan and secret experiments: a private broker per test
(its pid, to SIGSTOP it), a counter store the faults never touch, real worker processes running
``tests.apps.faults``, and a TCP proxy that can reset or black-hole every connection.

Minimal on purpose: the shared ``tests/faults/conftest.py`` grows the same fixtures; these keep the
experiments here self-contained until the two are folded together.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import redis

from engine.bundled import PrivateServer, client_for, start_private
from tests.apps import faults
from tests.faults.report import Verdict, emit, verdict
from tests.integration.harness import ROOT, WorkerProcess, wait_for

INFLIGHT = b"tqctl.inflight."


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateServer]:
    """A private server on TCP (so a proxy can sit in front of it), stopped even if a test froze it."""
    server = start_private(tmp_path / "broker", unix_socket=False)
    try:
        yield server
    finally:
        resume(server.pid)
        server.stop()


@pytest.fixture
def counter_url(tmp_path: Path) -> Iterator[str]:
    with start_private(tmp_path / "counter", unix_socket=False) as server:
        yield server.url


@pytest.fixture
def app(broker: PrivateServer, counter_url: str) -> Iterator[ModuleType]:
    """``tests.apps.faults`` as a client in this process, on this test's broker."""
    faults.app.close()
    faults.app.conf.broker_url = broker.url
    faults.app.conf.result_backend = broker.url
    yield faults
    faults.app.close()


@pytest.fixture
def workers(tmp_path: Path, counter_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    """``start(url, "-c", "2", name="w1")`` → a ready worker on ``url``; all killed at the end."""
    started: list[WorkerProcess] = []

    def start(url: str, *args: str, name: str | None = None, ready: bool = True,
              env: dict[str, str] | None = None) -> WorkerProcess:
        name = name or f"w{len(started) + 1}"
        extra = {"FAULT_COUNTER_URL": counter_url, **(env or {})}
        proc = WorkerProcess(url, ["-n", f"{name}@%h", "-l", "info", *args], tmp_path / f"{name}.log", extra,
                             app="tests.apps.faults")
        started.append(proc)
        return proc.wait_ready(30) if ready else proc

    yield start
    for proc in started:
        resume(proc.pid)
        proc.close()
        try:  # the whole group, even when its leader is already gone (children it left behind)
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def resume(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)  # never leave a frozen process behind
    except ProcessLookupError:
        pass


def send(app: ModuleType, n: int, late: bool = False, seconds: float = 0.0, queue: str | None = None) -> list[str]:
    task = app.count_late if late else app.count
    calls = [((seconds,), None)] * n
    return [r.id for r in app.app.send_many(task.name, calls, task=task, queue=queue)]


def wait_ran(counter_url: str, ids: list[str], timeout: float) -> dict[str, int]:
    """Wait (positively) until every id has started at least once, or ``timeout``; the counts."""
    deadline = time.monotonic() + timeout
    runs = faults.runs(counter_url)
    while time.monotonic() < deadline and any(runs.get(i, 0) == 0 for i in ids):
        time.sleep(0.2)
        runs = faults.runs(counter_url)
    return runs


def held_ids(broker_url: str) -> set[str]:
    """Task ids whose messages sit in any owner's in-flight record or staging list (stuck if never run)."""
    import json

    client = client_for(broker_url)
    found: set[str] = set()
    try:
        for key in client.scan_iter(match="tqctl.*"):
            kind = client.type(key)
            if kind == b"hash" and key.startswith(INFLIGHT):
                values = client.hvals(key)
            elif kind == b"list":
                values = client.lrange(key, 0, -1)
            else:
                continue
            for value in values:
                raw = value.partition(b"\x1f")[2] or value
                try:
                    found.add(json.loads(raw)["headers"]["id"])
                except (ValueError, KeyError, TypeError):
                    continue
    finally:
        client.close()
    return found


def judge(name: str, ids: list[str], runs: dict[str, int], broker_url: str,
          recovery_s: float | None = None) -> Verdict:
    missing = [i for i in ids if runs.get(i, 0) == 0]
    stuck = held_ids(broker_url) & set(missing) if missing else set()
    return emit(name, verdict(ids, runs, stuck=stuck, recovery_s=recovery_s))


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def alive(pid: int) -> bool:
    """Running and not a zombie (a reaped-later child of a dead parent is adopted and reaped by init)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class Proxy:
    """A TCP proxy in front of the broker. ``reset()`` kills every open connection with an RST;
    ``blackhole`` (while True) forwards requests but drops the server's replies, so commands run on
    the server while their callers never hear back: what a connection lost mid-reply looks like."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.blackhole = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, reply: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if reply and self.blackhole:
                    continue
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            _rst(sock)

    def reset(self) -> int:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            _rst(client)
            _rst(server)
        return len(pairs)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.reset()


def _rst(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def broker_address(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    return host, int(port)


__all__ = ["ROOT", "Proxy", "alive", "app", "broker", "broker_address", "children_of", "cmdline", "counter_url",
           "held_ids", "judge", "redis", "resume", "send", "wait_for", "wait_ran", "workers"]
