"""Fault-experiment parts: servers a test may stop, freeze and restart on the same address, and the
one question every experiment asks at the end: where is each task now (ran, dead-lettered, still held
somewhere in the broker, or nowhere at all)? The fixtures in ``conftest.py`` hand these out.

Each server is its own foreground process (not daemonized), so a test can SIGSTOP, SIGKILL or restart
it; runs are read from the counter store ``tests.apps.faults`` writes to, never from the engine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import redis

from engine import resp
from engine.broker.redis import DEAD_META, DELAYED, INFLIGHT
from engine.bundled import client_for, resolve_server_binary, socket_path_fits
from engine.task import Task
from tests.faults.report import Verdict, emit, verdict
from tests.integration.servers import START_TRIES, PortTaken, free_port, wait_listening


class FaultServer:
    """A Redis-compatible server in ``directory`` on a fixed address (unix socket, or a loopback TCP
    port with ``tcp=True``) kept across ``kill``/``start``; AOF on, as the bundled broker runs. A
    first start whose port another process took after it was chosen moves to a fresh one."""

    def __init__(self, directory: Path, tcp: bool = False) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.socket = directory / "s.sock"
        self.port = free_port() if tcp or not socket_path_fits(self.socket) else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = False  # after the first start the address is fixed: clients know it

    @property
    def url(self) -> str:
        # unix:// rather than redis+socket://: plain redis-py (the counting app) reads it too.
        return f"redis://127.0.0.1:{self.port}/0" if self.port else f"unix://{self.socket}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    def _config(self) -> str:
        listen = (
            [f"port {self.port}", "bind 127.0.0.1"]
            if self.port
            else ["port 0", f'unixsocket "{self.socket}"', "unixsocketperm 700"]
        )
        return "\n".join(
            [
                *listen,
                f'dir "{self.directory}"',
                "appendonly yes",
                "appendfsync everysec",
                'save ""',
                "maxmemory-policy noeviction",
                "",
            ]
        )

    def start(self, timeout: float = 15.0) -> FaultServer:
        """Start and wait until its own log says it listens (a PING could be answered by whoever
        took the port); on a first start a taken TCP port moves it to a fresh one, ``START_TRIES``
        starts in all."""
        tries = START_TRIES if self.port and not self.started else 1
        for attempt in range(1, tries + 1):
            try:
                self._launch(timeout)
            except PortTaken as exc:
                if attempt == tries:
                    where = f"the server in {self.directory}"
                    raise RuntimeError(f"{where} found its port taken on {tries} start(s); last: {exc}") from None
                self.port = free_port()
                continue
            self.started = True
            return self
        raise AssertionError("unreachable")

    def _launch(self, timeout: float) -> None:
        config = self.directory / "server.conf"
        config.write_text(self._config())
        self.socket.unlink(missing_ok=True)
        path = self.directory / "server.log"
        offset = path.stat().st_size if path.exists() else 0  # this start's lines only
        with open(path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(resolve_server_binary()), str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.directory,
                start_new_session=True,
            )
        wait_listening(self.proc, path, offset, self.port, timeout)

    def answers(self) -> bool:
        try:
            with client_for(self.url, 1.0, retry=False) as client:
                return bool(client.ping())
        except (redis.RedisError, resp.RedisError, OSError):
            return False

    def client(self) -> redis.Redis:
        return client_for(self.url, timeout=10.0)

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def freeze(self) -> None:
        self.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: nothing flushed beyond the last fsync, as a crash or the OOM killer leaves it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM: a clean shutdown (the AOF is flushed)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def send(task: Task, n: int, *args: object, queue: str | None = None, **options: object) -> list[str]:
    """``n`` calls of ``task`` with ``args`` and the same options, published in one round trip
    (``send_many``), so a thousand tasks are queued before the first few have run; their ids in order."""
    sent = task.app.send_many(task.name, [(args, None)] * n, task=task, queue=queue, **options)
    return [result.id for result in sent]


def runs(counter_url: str) -> dict[str, int]:
    """Task id → how many times it started (from the counter store)."""
    from tests.apps.faults import runs as counted

    return counted(counter_url)


def dead_ids(broker_url: str) -> dict[str, str]:
    """Task id → dead-letter reason, for every letter that names a task."""
    with client_for(broker_url, 10.0) as client:
        metas = client.hvals(DEAD_META)
    found: dict[str, str] = {}
    for raw in metas:
        meta = json.loads(raw)
        if meta.get("task_id"):
            found[meta["task_id"]] = meta["reason"]
    return found


def _task_id(value: bytes) -> str | None:
    """The id in a message, bare or behind an ``owner-tag\\x1f`` prefix (JSON never holds a raw 0x1f)."""
    try:
        task_id = (json.loads(value.partition(b"\x1f")[2] or value).get("headers") or {}).get("id")
    except (ValueError, AttributeError):
        return None
    return task_id if isinstance(task_id, str) else None


def held_ids(broker_url: str, queued: bool = True) -> set[str]:
    """Ids of task messages still in the broker: taken by a worker (its in-flight record or staging
    list) and, unless ``queued=False``, waiting on a queue or delayed."""
    found: set[str] = set()
    with client_for(broker_url, 10.0) as client:
        for key in client.scan_iter(count=1000):
            kind = client.type(key)
            if kind == b"list" and (key.startswith(b"tqctl.") or queued and not key.startswith(b"_kombu")):
                found.update(filter(None, map(_task_id, client.lrange(key, 0, -1))))
            elif kind == b"hash" and key.startswith(INFLIGHT.encode()):
                found.update(filter(None, map(_task_id, client.hvals(key))))
        if queued:
            found.update(filter(None, map(_task_id, client.zrange(DELAYED, 0, -1))))
    return found


def wait_settled(ids: Iterable[str], broker_url: str, counter_url: str, timeout: float = 60.0) -> float:
    """Wait until every id has run at least once or been dead-lettered; returns the seconds it took
    (``timeout`` if some never settled: ``judge`` then counts them stuck or lost)."""
    wanted = set(ids)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        counted = runs(counter_url)
        left = {i for i in wanted if not counted.get(i)}
        if not left or not left - set(dead_ids(broker_url)):
            return time.monotonic() - started
        time.sleep(0.1)
    return timeout


def judge(
    experiment: str, ids: list[str], broker_url: str, counter_url: str, recovery_s: float | None = None
) -> Verdict:
    """The verdict from the counter store and the broker, printed as the one JSON line."""
    counted = runs(counter_url)
    dead = dead_ids(broker_url)
    unrun = {i for i in ids if not counted.get(i) and i not in dead}
    stuck = held_ids(broker_url) & unrun if unrun else set()
    return emit(experiment, verdict(ids, counted, dead=dead, stuck=stuck, recovery_s=recovery_s))
