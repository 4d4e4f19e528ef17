"""Publishing events: worker and client events at once, task events in batches.

Task events are buffered and published as one ``task.multi`` list, as Celery's workers do,
so a busy worker pays one PUBLISH per batch rather than three per task.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any

from engine.broker.fanout import RedisFanout
from engine.protocol import events

BATCH = 100


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
        self._fixed_until, self._fixed_pid, self._utcoffset = 0.0, 0, 0.0

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
        # ``events.make``'s dict, with the pid and UTC offset looked up once a second, not per event.
        now = time.time()
        if now >= self._fixed_until or self._fixed_pid != os.getpid():
            self._fixed_pid, self._utcoffset = os.getpid(), events.utcoffset()
            self._fixed_until = now + 1.0
        event = {"hostname": self.hostname, "utcoffset": self._utcoffset, "pid": self._fixed_pid,
                 "clock": next(self._clock)}
        event.update(fields)
        event["timestamp"] = fields.get("timestamp") or now
        event["type"] = event_type
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
