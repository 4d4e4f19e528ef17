"""Pools that run tasks inside the worker process: solo (the main thread) and threads.

A pool takes jobs with ``submit`` and reports through its host's ``on_start`` (False: skip
it), ``on_done`` (with the outcome) and ``on_lost`` (its process died or overran the hard
limit); it never talks to the broker, so settlement stays in one place (``Settlement``).
"""

from __future__ import annotations

import abc
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from engine import signals, trace
from engine.worker.limits import ThreadLimiter, alarm_limits

if TYPE_CHECKING:
    from engine.app import App
    from engine.trace import Outcome
    from engine.worker.deadline import Deadline
    from engine.worker.job import Job
    from engine.worker.shared_books import SharedBooks


log = logging.getLogger("engine.worker")


class PoolHost(Protocol):
    app: App
    hostname: str

    def on_start(self, job: Job) -> bool: ...
    def on_done(self, job: Job, outcome: Outcome) -> None: ...
    def on_lost(self, job: Job, reason: str, exc: BaseException) -> None: ...


class Pool(abc.ABC):
    """What the worker and its consumer call on any pool. The abstract methods every pool has; the
    others are hooks only some pools need, whose defaults here say what a pool without them does."""

    kind: str
    shared: SharedBooks | None = None  # work-sharing children's books (``prefork`` on Redis), else None

    @abc.abstractmethod
    def start(self) -> None: ...
    @abc.abstractmethod
    def submit(self, job: Job) -> None: ...
    @abc.abstractmethod
    def run_main(self, stopping: threading.Event) -> None: ...
    @abc.abstractmethod
    def stop(self, timeout: float) -> list[Job]: ...
    @abc.abstractmethod
    def terminate(self, deadline: Deadline) -> list[Job]:
        """Cold: stop now and return every job not finished; any wait shares ``deadline``."""

    @abc.abstractmethod
    def size(self) -> int: ...
    @abc.abstractmethod
    def grow(self, n: int) -> int: ...
    @abc.abstractmethod
    def shrink(self, n: int) -> int: ...
    @abc.abstractmethod
    def processes(self) -> list[int]: ...
    @abc.abstractmethod
    def kill_job(self, task_id: str, signum: int) -> bool: ...

    def lease(self, epoch: int, until: float) -> None:
        """The owner's lease, renewed (each heartbeat). Nothing to pass on when every job starts
        through the host's ``on_start``: the worker checks the lease there, in its own process."""
        return None

    def cancel(self, task_ids: Iterable[str]) -> None:
        """Tasks just revoked. Nothing to do when every job starts through the host's ``on_start``:
        the worker's revoked set stops a waiting job there."""
        return None

    def batch(self) -> AbstractContextManager[None]:
        """Jobs submitted inside may go on to the pool together at its end. Without a shared queue
        to write them to in one go there is nothing to gather: each is taken as it is submitted."""
        return contextlib.nullcontext()


def drain(q: queue.Queue[Any] | queue.SimpleQueue[Any]) -> list[Job]:
    """The jobs still queued, taken off (the ``None`` stop markers dropped): what a stopping pool hands back."""
    left: list[Job] = []
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return left
        if item is not None:
            left.append(item)


def run_on_thread(host: PoolHost, job: Job, limiter: ThreadLimiter) -> Outcome:
    """One job on the calling pool thread, its time limits armed for the run; shared by the thread
    pool and the asyncio pool's plain ``def`` tasks so both run them the same way."""
    armed = job.soft_limit or job.hard_limit
    if armed:
        limiter.arm(job.soft_limit, job.hard_limit, job.name, job.id)
    try:
        return trace.run(host.app, job.task, job.request(host.hostname))
    except Exception as exc:  # outside trace's own net: still an outcome, never a dead thread
        return trace.internal_error(exc)
    finally:
        if armed:
            limiter.disarm()


def start_threads(threads: list[threading.Thread], target: Callable[[], None], n: int) -> int:
    """Start ``n`` more pool threads on ``target``, each kept in ``threads`` as soon as it runs (so
    one that failed to start leaves the others counted); returns the pool's new size."""
    for _ in range(n):
        thread = threading.Thread(target=target, name="pool", daemon=True)
        thread.start()
        threads.append(thread)
    return len(threads)


class SoloPool(Pool):
    """Runs each task on the main thread, one at a time (SIGALRM limits work here)."""

    kind = "solo"

    def __init__(self, host: PoolHost, concurrency: int = 1) -> None:
        self.host = host
        # SimpleQueue (C, no condition variables): a work-sharing child takes every job off it.
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._running: Job | None = None
        self._interrupted: list[Job] = []
        self.hard_limits = True  # False in a work-sharing child: its parent kills it at the hard limit

    def start(self) -> None:
        signals.worker_process_init.send(sender=self.host.hostname)  # as Celery's solo pool: the worker is the process

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def run_main(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            if self.run_next(0.2) is None:
                return

    def run_next(self, timeout: float) -> bool | None:
        """Run the next submitted job if one comes within ``timeout``: True if one ran (or was
        skipped), False if none came, None at the stop marker. A work-sharing child calls it
        between its own fetches, so its one thread fetches, sorts and runs (``sharing.serve``)."""
        try:
            job = self._jobs.get(timeout=timeout) if timeout > 0 else self._jobs.get_nowait()
        except queue.Empty:
            return False
        if job is None:
            return None
        self._running = job
        try:
            if not self.host.on_start(job):
                return True
            try:
                hard = job.hard_limit if self.hard_limits else None
                if job.soft_limit or hard:
                    with alarm_limits(job.soft_limit, hard):
                        outcome = trace.run(self.host.app, job.task, job.request(self.host.hostname))
                else:  # no limit: no timer, and no context manager to build for every task
                    outcome = trace.run(self.host.app, job.task, job.request(self.host.hostname))
            except Exception as exc:  # outside trace's own net: still an outcome
                outcome = trace.internal_error(exc)
            self._settle(job, outcome)
        except BaseException:
            self._interrupted.append(job)
            raise
        finally:
            self._running = None
        return True

    def _settle(self, job: Job, outcome: Outcome) -> None:
        try:
            self.host.on_done(job, outcome)
        except Exception:  # logged; the main loop lives on
            log.exception("settling %s[%s] failed", job.name, job.id)

    def stop(self, timeout: float) -> list[Job]:
        return drain(self._jobs)

    def terminate(self, deadline: Deadline) -> list[Job]:
        return drain(self._jobs) + self._interrupted

    def size(self) -> int:
        return 1

    def grow(self, n: int) -> int:
        return 1

    def shrink(self, n: int) -> int:
        return 1

    def processes(self) -> list[int]:
        import os

        return [os.getpid()]

    def kill_job(self, task_id: str, signum: int) -> bool:
        return False


class ThreadPool(Pool):
    """N threads in the worker process: cheap, shares memory, no hard kill of a stuck task."""

    kind = "threads"

    def __init__(self, host: PoolHost, concurrency: int) -> None:
        self.host = host
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._running: dict[int, Job] = {}
        self._target = concurrency
        self._lock = threading.Lock()
        self._limiter = ThreadLimiter()

    def start(self) -> None:
        self.grow(self._target)

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def _loop(self) -> None:
        ident = threading.get_ident()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            self._running[ident] = job
            try:
                if not self.host.on_start(job):
                    continue
                self.host.on_done(job, run_on_thread(self.host, job, self._limiter))
            except Exception:  # settling failed: logged; the thread lives on (a pool of 0 serves nobody)
                log.exception("settling %s[%s] failed", job.name, job.id)
            finally:
                self._running.pop(ident, None)

    def run_main(self, stopping: threading.Event) -> None:
        stopping.wait()

    def stop(self, timeout: float) -> list[Job]:
        left = drain(self._jobs)
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        for thread in threads:
            thread.join(timeout)
        self._limiter.stop()
        return left

    def terminate(self, deadline: Deadline) -> list[Job]:
        self._limiter.stop()  # running tasks are not waited for: their daemon threads end with the process
        return drain(self._jobs) + list(self._running.values())

    def size(self) -> int:
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            return len(self._threads)

    def grow(self, n: int) -> int:
        with self._lock:
            return start_threads(self._threads, self._loop, n)

    def shrink(self, n: int) -> int:
        with self._lock:
            n = min(n, len(self._threads) - 1)
        for _ in range(max(n, 0)):
            self._jobs.put(None)
        return self.size() - max(n, 0)

    def processes(self) -> list[int]:
        import os

        return [os.getpid()]

    def kill_job(self, task_id: str, signum: int) -> bool:
        return False
