"""Publishing events: worker and client events at once, task events in batches.

Task events are buffered and published as one ``task.multi`` list, as Celery's workers do,
so a busy worker pays one PUBLISH per batch rather than three per task.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _text  # C: a str as a JSON string
from typing import Any

from engine import forks
from engine.backlog import put_back
from engine.broker.fanout import RedisFanout
from engine.protocol import events
from engine.serialization import json_dumps

BATCH = 100
OFFLINE_KEEP = 10_000  # task events kept while the broker cannot take them; past it the oldest go
RETRY_AFTER = 1.0  # seconds a full buffer waits after a failed publish before a task tries again
log = logging.getLogger(__name__)


def _value(value: Any) -> str:
    """One field as JSON: the scalar types events carry by hand, anything else by the encoder."""
    kind = type(value)
    if kind is str:
        return _text(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value):
        return f"{value:.6f}"  # microseconds; half the cost of repr, which is slow on floats
    return json_dumps(value)


class EventDispatcher:
    def __init__(
        self,
        fanout: RedisFanout,
        hostname: str,
        enabled: bool = True,
        batch: int = BATCH,
        before_publish: Callable[[], None] | None = None,
    ) -> None:
        self.fanout = fanout
        self.hostname = hostname
        self.enabled = enabled
        self.batch = batch
        # Called before a batch goes out, after it was taken: the worker writes its history there,
        # so whoever hears a task's event can already read its record (the console subscribes,
        # then replays history, and would otherwise miss a task whose event beat its record).
        self.before_publish = before_publish  # a work-sharing child also writes its held results here
        self._clock = itertools.count(1)
        self._buffer: list[str] = []  # JSON text of each task event
        self._lock = threading.Lock()
        self._fixed_until, self._fixed_pid, self._utcoffset = 0.0, 0, 0.0
        self._head = ""
        self._quiet_until = 0.0  # after a failed publish, tasks leave the retry to ``flush``'s callers

    def clock(self) -> int:
        return next(self._clock)

    def send(self, event_type: str, **fields: Any) -> None:
        """Publish one event now (worker lifecycle, heartbeats, task-sent)."""
        event = events.make(event_type, self.hostname, self.clock(), **fields)
        key, raw = events.encode(event, self.hostname)
        self.fanout.publish(events.EXCHANGE, key, raw)

    def task(self, event_type: str, **fields: Any) -> None:
        """Buffer a task event as JSON text; the batch goes out when full or at the next ``flush``.

        Written by hand rather than as a dict for the encoder: three events per task made
        building and encoding them a fifth of a busy worker's CPU. The fields and their order
        are ``events.make``'s; the pid and UTC offset are looked up once a second.
        """
        if not self.enabled:
            return
        now = time.time()
        if now >= self._fixed_until or self._fixed_pid != forks.pid:  # not a system call an event
            self._fixed_pid, self._utcoffset = forks.pid, events.utcoffset()
            self._fixed_until = now + 1.0
            self._head = f'{{"hostname": {_text(self.hostname)}, "utcoffset": {_value(self._utcoffset)}, "pid": '
        timestamp = fields.pop("timestamp", None) or now
        parts = [self._head, str(fields.pop("pid", self._fixed_pid)), ', "clock": ', str(next(self._clock))]
        for key, value in fields.items():  # keys are keyword names: nothing to escape
            parts += (', "', key, '": ', _value(value))
        parts += (', "timestamp": ', _value(timestamp), ', "type": "', event_type, '"}')
        line = "".join(parts)
        with self._lock:
            self._buffer.append(line)
            full = len(self._buffer) >= self.batch and now >= self._quiet_until
        if full:
            self.flush()

    def flush(self) -> None:
        """Publish what is buffered, ``batch`` events a message. What the broker does not take stays
        buffered, ahead of newer events, for the next flush (as Celery's dispatcher buffers while
        offline): a broker restart no longer loses the events of the tasks that finished in it."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        if not batch:
            return
        if self.before_publish is not None:
            try:
                self.before_publish()
            except Exception as exc:  # the live stream still goes out
                log.warning("could not write before publishing events: %r", exc)
        for start in range(0, len(batch), self.batch):
            key, raw = events.encode_batch(batch[start : start + self.batch], self.hostname)
            try:
                self.fanout.publish(events.EXCHANGE, key, raw)
            except Exception:
                self._keep(batch[start:])
                raise

    def _keep(self, unsent: list[str]) -> None:
        """Unsent events back at the head of the buffer, the oldest dropped past ``OFFLINE_KEEP``."""
        with self._lock:
            self._buffer, dropped = put_back(unsent, self._buffer, OFFLINE_KEEP)
            self._quiet_until = time.time() + RETRY_AFTER
        if dropped > 0:
            log.warning("dropped %d task event(s) the broker could not take (kept the last %d)", dropped, OFFLINE_KEEP)
