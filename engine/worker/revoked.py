"""The worker's memory of revoked task ids, bounded like Celery's (``LimitedSet``): by size and by age.

Why: revokes reach a worker by broadcast and from the broker's store (kept 3 hours), and a worker lives
for months; an unbounded set would grow with every revoke ever made.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator

from engine.control import REVOKE_TTL

MAX_REVOKED = 50_000  # Celery's REVOKES_MAX


class RevokedSet:
    """A set of task ids, each forgotten ``ttl`` seconds after it was first added (``add`` renews it),
    and the oldest forgotten first once there are more than ``maxlen``."""

    def __init__(
        self, maxlen: int = MAX_REVOKED, ttl: float = REVOKE_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.maxlen = maxlen
        self.ttl = ttl
        self._clock = clock
        self._expires: OrderedDict[str, float] = OrderedDict()  # oldest expiry first (ttl is fixed)
        self._lock = threading.Lock()

    def add(self, task_id: str) -> None:
        """A revoke just made: remembered for a full ``ttl`` from now."""
        with self._lock:
            self._expires[task_id] = self._clock() + self.ttl
            self._expires.move_to_end(task_id)
            self._trim()

    def update(self, task_ids: Iterable[str]) -> None:
        """Revokes read from elsewhere (the broker, another worker): ids already known keep their age."""
        with self._lock:
            expiry = self._clock() + self.ttl
            for task_id in task_ids:
                if task_id not in self._expires:
                    self._expires[task_id] = expiry
            self._trim()

    def _trim(self) -> None:
        now = self._clock()
        entries = self._expires
        while entries and (len(entries) > self.maxlen or next(iter(entries.values())) <= now):
            entries.popitem(last=False)

    def __contains__(self, task_id: object) -> bool:
        with self._lock:
            expiry = self._expires.get(task_id)  # type: ignore[call-overload]
            return expiry is not None and expiry > self._clock()

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            self._trim()
            return iter(list(self._expires))

    def __len__(self) -> int:
        with self._lock:
            self._trim()
            return len(self._expires)
