"""The cluster side of ``tqctl bench``: the event stream it counts and the worker processes it starts.

Kept apart from the measuring in ``tqctl.benchmark`` so each file stays readable; both engines'
workers (ours and, in ``tests/bench/compare.py``, Celery's) are started and counted the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.events.receiver import EventReceiver
from engine.protocol import events
from tqctl import benchmark_sys as sysinfo

if TYPE_CHECKING:
    from tqctl.benchmark import Options, Target

ROOT = Path(__file__).resolve().parents[1]
Progress = Callable[[str], None]


class BenchError(Exception):
    """The benchmark could not run (a worker failed to start, tasks stopped completing)."""


# -- events -----------------------------------------------------------------------------------
class LosslessReceiver(EventReceiver):
    """``EventReceiver`` whose ``poll`` never gives up in the middle of a message.

    ``EventReceiver.poll`` passes the time left to ``get_message(timeout=...)``; when that runs out
    while a large ``task.multi`` batch is half-read, redis-py raises a timeout, drops the
    connection and resubscribes, and every event in flight is lost (about 1 task in 10 under a
    2,000/s drain). Here only the wait for the first byte is bounded; a message once started is
    read to its end, so the benchmark counts every task.
    """

    def poll(self, timeout: float = 0.1, max_messages: int = 10_000) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        pubsub = self._pubsub
        while len(out) < max_messages:
            left = deadline - time.monotonic()
            if pubsub.connection is None or not pubsub.connection.can_read(timeout=max(left, 0.0)):
                if left <= 0:
                    break
                continue
            message = pubsub.get_message(timeout=None)
            if message is not None and message.get("type") in ("message", "pmessage"):
                now = time.time()
                for event in events.decode(message["data"]):
                    event["local_received"] = now
                    out.append(event)
        return out


class Tracker:
    """Task-started / task-succeeded timestamps by task id and the nodes that came online."""

    def __init__(self, url: str, backend_url: str | None = None) -> None:
        from engine.broker.inspect import is_amqp, open_fanout

        # On AMQP the events arrive on RabbitMQ's ``celeryev`` exchange (py-amqp keeps a frame
        # read half-way across a timeout, so the plain receiver loses nothing there).
        self.rx = EventReceiver(url, open_fanout(url, backend_url)) if is_amqp(url) else LosslessReceiver(url)
        self.started: dict[str, float] = {}
        self.succeeded: dict[str, float] = {}
        self.online: set[str] = set()

    def pump(self, timeout: float) -> None:
        for event in self.rx.poll(max(timeout, 0.0)):
            kind = event["type"]
            if kind == "task-started":
                self.started[str(event.get("uuid"))] = float(event["timestamp"])
            elif kind == "task-succeeded":
                self.succeeded[str(event.get("uuid"))] = float(event["timestamp"])
            elif kind == "worker-online":
                self.online.add(str(event.get("hostname", "")).split("@", 1)[0])

    def idle(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.pump(min(left, 0.5))

    def wait_all(
        self, seen: dict[str, float], ids: Iterable[str], stall: float, progress: Progress | None = None, what: str = ""
    ) -> int:
        """Pump until every id is in ``seen`` or nothing new arrived for ``stall`` seconds."""
        ids = list(ids)
        pending = [i for i in ids if i not in seen]
        total = len(pending)
        last_change, shown = time.monotonic(), time.monotonic()
        while pending:
            self.pump(0.1)
            left = [i for i in pending if i not in seen]
            now = time.monotonic()
            if len(left) < len(pending):
                last_change = now
            elif now - last_change > stall:
                break
            pending = left
            if progress is not None and now - shown >= 5:
                shown = now
                progress(f"  {what}: {total - len(pending)}/{total}")
        return len(ids) - len(pending)

    def close(self) -> None:
        self.rx.close()


# -- workers ----------------------------------------------------------------------------------
class Workers:
    """The bench app's worker processes, each in its own session so the tree is easy to find."""

    def __init__(self, target: Target, opts: Options, logdir: Path) -> None:
        if opts.workers < 1 or opts.processes % opts.workers:
            raise BenchError(f"--processes {opts.processes} does not split over --workers {opts.workers}")
        per = opts.processes // opts.workers
        tag = uuid.uuid4().hex[:6]
        self.nodes = [f"bench{i + 1}-{tag}" for i in range(opts.workers)]
        env = {
            **os.environ,
            **target.env,
            "TQCTL_BENCH_QUEUE": target.queue,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.logs = [logdir / f"{node}.log" for node in self.nodes]
        self.procs: list[subprocess.Popen[bytes]] = []
        for node, log in zip(self.nodes, self.logs, strict=True):
            with open(log, "ab") as out:
                self.procs.append(
                    subprocess.Popen(
                        target.worker_argv(f"{node}@%h", per, opts.pool),
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=str(ROOT),
                        start_new_session=True,
                    )
                )

    def wait_ready(self, tracker: Tracker, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(node in tracker.online for node in self.nodes):
            for proc, log in zip(self.procs, self.logs, strict=True):
                if proc.poll() is not None:
                    raise BenchError(f"a worker exited with {proc.returncode} at startup: {tail(log)}")
            if time.monotonic() > deadline:
                raise BenchError(f"workers not online after {timeout:.0f}s: {tail(self.logs[0])}")
            tracker.pump(0.2)

    def pids(self) -> list[int]:
        return sysinfo.process_tree(p.pid for p in self.procs)

    def cpu(self) -> float:
        return sysinfo.tree_cpu_seconds(self.pids())

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(10)


def tail(path: Path, lines: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:]) or "(empty log)"
    except OSError:
        return "(no log)"
