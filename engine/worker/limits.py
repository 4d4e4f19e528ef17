"""Time limits for tasks that run inside the worker process or a pool child.

On a process's main thread SIGALRM interrupts even a blocking ``sleep``; that serves solo and
prefork children (whose hard limit is a SIGKILL from the parent). Threads can only be reached
by an asynchronous exception, delivered at the next Python bytecode.
"""

from __future__ import annotations

import heapq
import itertools
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from engine.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded


@contextmanager
def alarm_limits(soft: float | None, hard: float | None) -> Iterator[None]:
    """Raise ``SoftTimeLimitExceeded`` at ``soft`` and ``TimeLimitExceeded`` at ``hard``."""
    if not soft and not hard:
        yield
        return
    stages = sorted(
        [(s, SoftTimeLimitExceeded) for s in [soft] if s] + [(h, TimeLimitExceeded) for h in [hard] if h],
        key=lambda st: st[0],
    )
    started = time.monotonic()

    def fire(signum: int, frame: FrameType | None) -> None:
        limit, exc_type = stages.pop(0)
        if stages:
            signal.setitimer(signal.ITIMER_REAL, max(0.001, stages[0][0] - (time.monotonic() - started)))
        raise exc_type(f"time limit ({limit}s) exceeded")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, stages[0][0])
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> None:
    import ctypes  # only a thread pool with a time limit needs it; prefork children never do

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))


class ThreadLimiter:
    """One timer thread for all pool threads: raises the limit exception in the late thread."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, type[BaseException]]] = []
        self._active: dict[int, int] = {}  # thread id -> current run token
        self._tokens = itertools.count(1)
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="time-limits", daemon=True)
        self._thread.start()

    def arm(self, soft: float | None, hard: float | None) -> int:
        tid = threading.get_ident()
        token = next(self._tokens)
        now = time.monotonic()
        with self._cond:
            self._active[tid] = token
            for limit, exc in ((soft, SoftTimeLimitExceeded), (hard, TimeLimitExceeded)):
                if limit:
                    heapq.heappush(self._heap, (now + limit, tid, token, exc))
            self._cond.notify()
        return token

    def disarm(self) -> None:
        with self._cond:
            self._active.pop(threading.get_ident(), None)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _loop(self) -> None:
        with self._cond:
            while not self._stopped:
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, tid, token, exc = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                if self._active.get(tid) == token:
                    _raise_in_thread(tid, exc)
