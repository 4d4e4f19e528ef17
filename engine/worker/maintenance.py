"""Background upkeep that keeps ownership honest: heartbeats, reaping, due ETAs, late acks.

Every worker runs it; each step is one atomic script on the broker, so many workers doing it
at once never move a message twice.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import redis

from engine.exceptions import BrokerUnavailable

if TYPE_CHECKING:
    from engine.worker.worker import Worker

log = logging.getLogger("engine.worker")
TICK = 0.1


class Maintenance:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.broker = worker.broker
        self.interval = float(worker.app.conf.tqctl_heartbeat_interval)
        self.owner_timeout = float(worker.app.conf.tqctl_owner_timeout)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, name="maintenance", daemon=True)
        self._next_beat = 0.0
        self._next_due: float | None = 0.0

    def beat(self) -> None:
        """Announce the owner before it fetches anything, so its messages are always reapable."""
        self.broker.heartbeat(self.worker.owner, time.time())

    def run(self) -> None:
        failing_since: float | None = None
        next_warning = 0.0
        while not self.done.wait(TICK):
            try:
                self.step()
            except (redis.RedisError, BrokerUnavailable, OSError) as exc:
                # A warning, not debug: while this fails the owner heartbeat is not written, and after
                # tqctl_owner_timeout other workers take this worker's messages back. Every 5 s at most.
                now = time.monotonic()
                failing_since = failing_since or now
                if now >= next_warning:
                    next_warning = now + 5.0
                    log.warning("owner heartbeat and upkeep failing for %.1fs (messages held here are "
                                "reclaimed by other workers after %.0fs): %s", now - failing_since,
                                self.owner_timeout, exc)
                continue
            if failing_since is not None:
                log.warning("owner heartbeat written again after %.1fs", time.monotonic() - failing_since)
                failing_since, next_warning = None, 0.0

    def step(self) -> None:
        now = time.time()
        acks = self.worker.acker.take()
        if acks:
            try:
                self.broker.ack(self.worker.owner, acks)
            except Exception:
                self.worker.acker.put_back(acks)
                raise
        self.worker.on_tick(now)
        if self._next_due is not None and self._next_due <= now + TICK:
            _moved, self._next_due = self.broker.promote_due(now)
        if now >= self._next_beat:
            self._next_beat = now + self.interval
            self.broker.heartbeat(self.worker.owner, now)
            recovered = self.broker.reap(now, self.owner_timeout)
            if recovered:
                log.warning("recovered %d message(s) from worker(s) that stopped heartbeating",
                            recovered)
            _moved, self._next_due = self.broker.promote_due(now)
            self.worker.on_heartbeat()

    def expect_due(self, when: float) -> None:
        """A message was just parked until ``when``: wake for it even if the set looked empty."""
        if self._next_due is None or when < self._next_due:
            self._next_due = when

    def stop(self) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join(2)
