"""Publishing events: worker and client events at once, task events in batches.

Task events are buffered and published as one ``task.multi`` list, as Celery's workers do,
so a busy worker pays one PUBLISH per batch rather than three per task.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from engine.broker.fanout import RedisFanout
from engine.protocol import events

BATCH = 24


class EventDispatcher:
    def __init__(self, fanout: RedisFanout, hostname: str, enabled: bool = True,
                 batch: int = BATCH) -> None:
        self.fanout = fanout
        self.hostname = hostname
        self.enabled = enabled
        self.batch = batch
        self._clock = itertools.count(1)
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def clock(self) -> int:
        return next(self._clock)

    def send(self, event_type: str, **fields: Any) -> None:
        """Publish one event now (worker lifecycle, heartbeats, task-sent)."""
        event = events.make(event_type, self.hostname, self.clock(), **fields)
        key, raw = events.encode(event, self.hostname)
        self.fanout.publish(events.EXCHANGE, key, raw)

    def task(self, event_type: str, **fields: Any) -> None:
        """Buffer a task event; the batch goes out when full or at the next ``flush``."""
        if not self.enabled:
            return
        event = events.make(event_type, self.hostname, self.clock(), **fields)
        with self._lock:
            self._buffer.append(event)
            full = len(self._buffer) >= self.batch
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            batch, self._buffer = self._buffer, []
        if batch:
            key, raw = events.encode(batch, self.hostname)
            self.fanout.publish(events.EXCHANGE, key, raw)
