"""How many fetched messages the worker may hold at once (its prefetch window).

One counter behind one condition: the consumer takes slots as it sorts messages (on its own
thread, or on a pool thread in ``Consumer.top_up``), pool threads and the prefork collector
release them as jobs end, and the consumer waits on the condition for room. Shutdown wakes
every waiter so no thread sleeps through a stop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Capacity:
    def __init__(self, limit: int, stopping: threading.Event) -> None:
        self.limit = limit
        self._held = 0
        self._stopping = stopping
        self._cond = threading.Condition()

    @property
    def held(self) -> int:
        return self._held

    def room(self) -> int:
        return self.limit - self._held

    def take(self) -> None:
        with self._cond:
            self._held += 1

    def release(self, wake: bool = True) -> None:
        """``wake=False`` when the releasing thread fetches the next batch itself (``top_up``)."""
        with self._cond:
            self._held -= 1
            if wake:
                self._cond.notify()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def wait_for_room(self, timeout: float) -> None:
        with self._cond:
            if self._held >= self.limit and not self._stopping.is_set():
                self._cond.wait(timeout)

    def wait_while(self, busy: Callable[[], bool], timeout: float) -> None:
        """Sleep until a release (or ``timeout``) if ``busy()`` holds, checked under the lock so a
        release between the check and the wait is not missed."""
        with self._cond:
            if busy() and not self._stopping.is_set():
                self._cond.wait(timeout)
