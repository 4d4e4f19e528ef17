"""Time limits for tasks that run inside the worker process or a pool child.

On a process's main thread SIGALRM interrupts even a blocking ``sleep``; that serves solo and
prefork children (whose hard limit is a SIGKILL from the parent). Threads can only be reached
by an asynchronous exception, delivered at the next Python bytecode.

What a limit says is Celery 5.7's, for every pool: ``SoftTimeLimitExceeded()`` with no arguments,
``TimeLimitExceeded(limit)``, and the worker lines "Soft time limit (1s) exceeded for name[id]"
(a warning) and "Hard time limit (1s) exceeded for name[id]" (an error) from ``log_exceeded``,
which every pool reaches when a limit fires (the thread limiter directly: it raises a class).

A limit that falls while the task is inside a ``logging`` call waits for it to return (up to
``DEFER_MOST`` x ``DEFER_S``): ``Handler.emit`` turns any exception into a "--- Logging error ---"
report and carries on, so a limit raised there was lost and a chatty task ran on past its soft
limit for good.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from engine.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from engine.log import current_task, running_request

log = logging.getLogger("engine.worker")

DEFER_S = 0.01  # how soon a limit that found the task inside logging looks again
DEFER_MOST = 100  # and how often, at most, before it is raised wherever the task is
COMPACT_FROM = 64  # a heap this small is never worth rebuilding
_LOGGING = os.path.dirname(logging.__file__) + os.sep


def _in_logging(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith(_LOGGING):
            return True
        frame = frame.f_back
    return False


def log_exceeded(limit: float, hard: bool, name: str, task_id: str) -> None:
    """Celery's worker line for a limit that fired: a warning for the soft one, an error for the
    hard one."""
    if hard:
        log.error("Hard time limit (%ss) exceeded for %s[%s]", limit, name, task_id)
    else:
        log.warning("Soft time limit (%ss) exceeded for %s[%s]", limit, name, task_id)


def soft_exceeded(limit: float, name: str, task_id: str) -> SoftTimeLimitExceeded:
    """The worker's warning line, and the exception to raise in the task."""
    log_exceeded(limit, False, name, task_id)
    return SoftTimeLimitExceeded()


def hard_exceeded(limit: float, name: str, task_id: str) -> TimeLimitExceeded:
    """The worker's error line, and the task's failure (raised in it, or stored for it by a
    parent that killed the process running it)."""
    log_exceeded(limit, True, name, task_id)
    return TimeLimitExceeded(limit)


def exceeded(limit: float, hard: bool, name: str, task_id: str) -> BaseException:
    return hard_exceeded(limit, name, task_id) if hard else soft_exceeded(limit, name, task_id)


def _exceeded_here(limit: float, hard: bool) -> BaseException:
    """For the task running on this thread (a signal handler runs on the task's own thread)."""
    task, request = current_task(), running_request()
    name, task_id = ("???", "???") if task is None or request is None else (str(task.name), str(request.id))
    return exceeded(limit, hard, name, task_id)


@contextmanager
def alarm_limits(soft: float | None, hard: float | None) -> Iterator[None]:
    """Raise ``SoftTimeLimitExceeded`` at ``soft`` and ``TimeLimitExceeded`` at ``hard``."""
    if not soft and not hard:
        yield
        return
    stages = sorted([(s, False) for s in [soft] if s] + [(h, True) for h in [hard] if h], key=lambda st: st[0])
    started = time.monotonic()
    deferred = [0]

    def fire(signum: int, frame: FrameType | None) -> None:
        if deferred[0] < DEFER_MOST and _in_logging(frame):
            deferred[0] += 1
            signal.setitimer(signal.ITIMER_REAL, DEFER_S)
            return
        deferred[0] = 0
        limit, hard = stages.pop(0)
        if stages:
            signal.setitimer(signal.ITIMER_REAL, max(0.001, stages[0][0] - (time.monotonic() - started)))
        raise _exceeded_here(limit, hard)

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, stages[0][0])
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@functools.cache
def _hard_limit_class(limit: float) -> type[TimeLimitExceeded]:
    """``PyThreadState_SetAsyncExc`` raises a class, never an instance, so the class itself must
    carry the limit: built with no arguments it is ``TimeLimitExceeded(limit)``, named, stored and
    pickled as the plain class."""

    def __init__(self: TimeLimitExceeded, *args: object) -> None:
        TimeLimitExceeded.__init__(self, *(args or (limit,)))

    def __reduce__(self: TimeLimitExceeded) -> tuple[type[TimeLimitExceeded], tuple[object, ...]]:
        return TimeLimitExceeded, self.args

    body = {"__init__": __init__, "__reduce__": __reduce__, "__module__": TimeLimitExceeded.__module__}
    return type("TimeLimitExceeded", (TimeLimitExceeded,), {**body, "__qualname__": "TimeLimitExceeded"})


def _raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> None:
    import ctypes  # only a thread pool with a time limit needs it; prefork children never do

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))


class ThreadLimiter:
    """One timer thread for all pool threads: raises the limit exception in the late thread."""

    def __init__(self) -> None:
        # (deadline, unique, thread id, run token, exception, deferrals): unique keeps the
        # exception classes out of comparisons when two limits fall at once.
        self._heap: list[tuple[float, int, int, int, type[BaseException], int]] = []
        # thread id -> (current run token, task name, task id, soft limit, hard limit): what the
        # worker's line names when a limit fires, kept per run rather than in each heap entry.
        self._active: dict[int, tuple[int, str, str, float | None, float | None]] = {}
        self._tokens = itertools.count(1)
        # Heap entries of runs that ended (or were re-armed over) before their deadlines: dropped
        # lazily by a compaction once they are most of the heap, so a long limit over many short
        # tasks does not keep one entry per task of the last hour. An upper bound (an entry that
        # already fired is counted too): it only decides when to compact.
        self._stale = 0
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="time-limits", daemon=True)
        self._thread.start()

    def arm(self, soft: float | None, hard: float | None, name: str = "???", task_id: str = "???") -> int:
        tid = threading.get_ident()
        token = next(self._tokens)
        now = time.monotonic()
        with self._cond:
            previous = self._active.get(tid)
            self._active[tid] = (token, name, task_id, soft, hard)
            if previous is not None:
                self._release(previous)
            stages: list[tuple[float, type[BaseException]]] = [(soft, SoftTimeLimitExceeded)] if soft else []
            if hard:
                stages.append((hard, _hard_limit_class(hard)))
            for limit, exc in stages:
                heapq.heappush(self._heap, (now + limit, next(self._tokens), tid, token, exc, 0))
            self._cond.notify()
        return token

    def disarm(self) -> None:
        with self._cond:
            run = self._active.pop(threading.get_ident(), None)
            if run is not None:
                self._release(run)

    def pending(self) -> int:
        """How many deadlines the limiter holds: bounded by the runs in flight, not the runs of
        the last ``time_limit`` seconds."""
        with self._cond:
            return len(self._heap)

    def _release(self, run: tuple[int, str, str, float | None, float | None]) -> None:
        """Counts the ended run's entries as stale; rebuilds the heap without the stale entries
        once they are over half of it (amortised O(1) a run, under the lock)."""
        self._stale += bool(run[3]) + bool(run[4])
        if self._stale * 2 > len(self._heap) >= COMPACT_FROM:
            live = {(tid, r[0]) for tid, r in self._active.items()}
            self._heap = [entry for entry in self._heap if (entry[2], entry[3]) in live]
            heapq.heapify(self._heap)
            self._stale = 0

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
                deadline, _, tid, token, exc, deferred = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                run = self._active.get(tid)
                if run is None or run[0] != token:
                    self._stale = max(0, self._stale - 1)
                    continue
                if deferred < DEFER_MOST and _in_logging(sys._current_frames().get(tid)):
                    again = (time.monotonic() + DEFER_S, next(self._tokens), tid, token, exc, deferred + 1)
                    heapq.heappush(self._heap, again)
                    continue
                self._fire(tid, exc, run)

    def _fire(self, tid: int, exc: type[BaseException], run: tuple[int, str, str, float | None, float | None]) -> None:
        """Logs the line before raising, as the other pools do; under the lock, so the run cannot
        end and its thread start another before the exception lands (a limit is rare, arm is not)."""
        _, name, task_id, soft, hard = run
        is_hard = not issubclass(exc, SoftTimeLimitExceeded)
        log_exceeded((hard if is_hard else soft) or 0.0, is_hard, name, task_id)
        _raise_in_thread(tid, exc)
