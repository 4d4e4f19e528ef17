"""Liveness without a round trip: ``tqctl worker --health-file PATH`` and the checks of ``tqctl health``.

The worker rewrites the file on each of its heartbeats (every 2 s), but only while it makes
progress. Progress means the upkeep thread runs (it sends the heartbeat), the consumer thread is
alive, and the consumer is not starving a free slot: when a slot is free and a consumed queue
has a message waiting, something must have been received within ``stall`` seconds. A worker whose
slots are all busy with long tasks is busy, not wedged, and keeps the file fresh; a stopped
process, a dead or stuck consumer, or a dead pool lets it go stale, and ``tqctl health --file``
(a Kubernetes exec probe) exits non-zero.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("tqctl.health")
STALL = 5.0  # seconds a free slot may wait for a queued message before the consumer counts as stuck

# Exit codes of ``tqctl health`` (README "Health probes").
HEALTHY = 0
STALE = 3  # the file is older than --max-age: the worker is wedged or stopped
MISSING_FILE = 4  # no file: the worker has not become ready (or never had --health-file)
NO_REPLY = 69  # the node did not answer a ping (as ``tqctl status``)


class HealthFile:
    """Rewritten (atomically) on each heartbeat the worker sends while it makes progress."""

    def __init__(self, path: str, worker: Any, stall: float = STALL) -> None:
        self.path = path
        self.worker = worker
        self.stall = stall
        self._last_received = time.monotonic()
        self._reason = ""

    def on_event(self, event: dict[str, Any]) -> None:
        etype = event.get("type")
        if etype == "task-received":
            self._last_received = time.monotonic()
        elif etype in ("worker-heartbeat", "worker-online"):
            try:
                problem = self.problem()
            except Exception as exc:  # a worker this check no longer understands: say so, loudly
                problem = f"the health check itself failed: {exc!r}"
            if problem is None:
                self._write(event)
            elif problem != self._reason:
                log.error("health file %s not refreshed: %s", self.path, problem)
            self._reason = problem or ""

    def problem(self) -> str | None:
        """Why the worker is not making progress, or None."""
        w = self.worker
        if w.stopping.is_set():
            return None  # a warm shutdown finishing its tasks is progress, not a wedge
        if not w.consumer.thread.is_alive():
            if w.consumer.thread.ident is None:
                return None  # not started yet: worker-online comes before the consumer starts
            return "the consumer thread is not running"
        if w.pool.size() < 1:
            return "the pool has no process or thread left"
        idle = len(w.active) + len(w.reserved) < w.concurrency
        if idle and w.queues and time.monotonic() - self._last_received > self.stall and self._queued() > 0:
            return f"a slot is free and messages wait, but nothing was received for over {self.stall:.0f}s"
        return None

    def _queued(self) -> int:
        try:
            broker = self.worker.broker
            return sum(broker.queue_depth(queue) for queue in list(self.worker.queues))
        except Exception:  # the broker's own trouble is not this worker's wedge
            return 0

    def _write(self, event: dict[str, Any]) -> None:
        w = self.worker
        data = {
            "hostname": w.hostname,
            "pid": os.getpid(),
            "time": time.time(),
            "active": len(w.active),
            "reserved": len(w.reserved),
            "concurrency": w.concurrency,
        }
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, self.path)
        except OSError as exc:
            if self._reason != f"write: {exc}":
                log.error("cannot write the health file %s: %s", self.path, exc)
            self._reason = f"write: {exc}"

    def close(self) -> None:
        """A stopped worker is not healthy: its file goes, so a probe never reads a stale success."""
        try:
            os.unlink(self.path)
        except OSError:
            pass


@dataclass(frozen=True)
class Check:
    name: str
    code: int
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.code == HEALTHY, "code": self.code, "detail": self.detail}


def check_file(path: str, max_age: float, now: float | None = None) -> Check:
    now = time.time() if now is None else now
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return Check("file", MISSING_FILE, f"{path} does not exist (worker not ready, or not started with it)")
    except OSError as exc:
        return Check("file", MISSING_FILE, f"{path}: {exc.strerror or exc}")
    if not stat.S_ISREG(found.st_mode):  # a folder's time moves with its files: no worker's beat
        return Check("file", MISSING_FILE, f"{path} is not a file (give the worker's --health-file)")
    age = now - found.st_mtime
    host = ""
    try:
        with open(path) as fh:
            host = str(json.load(fh).get("hostname") or "")
    except (OSError, ValueError, AttributeError):
        pass
    who = f" ({host})" if host else ""
    if age > max_age:
        return Check("file", STALE, f"{path}{who} last refreshed {age:.1f}s ago (max {max_age:g}s)")
    return Check("file", HEALTHY, f"{path}{who} refreshed {age:.1f}s ago")
