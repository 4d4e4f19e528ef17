"""``Deadline``: one time limit shared by the waits of a stop, so the whole stop is bounded.

A cold stop used to join, one after another, the consumer (3 s), the fetch-ahead thread (3 s),
the collector (2 s), each child (0.5 s, then SIGKILL and 2 s) and the two upkeep threads (2 s
each), each with a timeout of its own: a stop took their sum when they all ran out, and more
with more children. Every one of those waits now takes what is left of one deadline; a wait that
runs out is logged by name, so the log says what the stop went on without.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from multiprocessing.connection import wait as wait_ready

log = logging.getLogger("engine.worker")
COLD_STOP = 5.0  # seconds a cold stop waits in all before it kills the pool processes still there
CLOSE_WAIT = 5.0  # the same for a warm stop's close, once its running tasks have finished


class Deadline:
    """A point in time, and the waits that ran out before it (``cut``)."""

    def __init__(self, seconds: float, what: str = "cold stop") -> None:
        self.seconds = seconds
        self.what = what
        self._end = time.monotonic() + seconds
        self.cut: list[str] = []

    def remaining(self, at_least: float = 0.0) -> float:
        """Seconds left (never below ``at_least``: a wait that must get a moment however late)."""
        return max(at_least, self._end - time.monotonic())

    def join(self, thread: threading.Thread, name: str, at_least: float = 0.0) -> bool:
        """Wait for ``thread`` to end within what is left; False, and logged, if it still runs."""
        if thread.is_alive():
            thread.join(self.remaining(at_least))
        if thread.is_alive():
            self.cut_short(name)
            return False
        return True

    def wait_sentinels(self, sentinels: Iterable[int]) -> set[int]:
        """Wait for processes to end (their ``sentinel``s) within what is left; returns those
        still running."""
        left = set(sentinels)
        while left and (seconds := self.remaining()) > 0:
            left.difference_update(wait_ready(list(left), seconds))
        return left

    def cut_short(self, name: str, then: str = "going on without it") -> None:
        self.cut.append(name)
        log.warning("%s: %s did not end within %.1fs; %s", self.what, name, self.seconds, then)
