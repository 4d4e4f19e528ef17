"""Autoscale: grow the pool while jobs wait for a process, shrink it after a quiet spell."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.worker.pool import Pool

IDLE_BEFORE_SHRINK = 3.0  # seconds with idle processes and nothing waiting before one is retired


class Autoscaler:
    """Called on the maintenance thread once per owner heartbeat (``Worker.on_heartbeat``)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._idle_since = time.monotonic()

    def step(self, bounds: tuple[int, int], waiting: int, running: int) -> None:
        high, low = bounds
        size = self.pool.size()
        now = time.monotonic()
        if waiting and size < high:
            self.pool.grow(min(waiting, high - size))
            self._idle_since = now
        elif not waiting and running < size:
            if size > low and now - self._idle_since > IDLE_BEFORE_SHRINK:
                self.pool.shrink(1)
                self._idle_since = now
        else:
            self._idle_since = now
