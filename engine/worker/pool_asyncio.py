"""``-P asyncio``: ``async def`` tasks on one event loop in the worker process (uvloop when installed).

``-c`` is the most tasks in flight. Each async task's run (``engine.trace``: signals, the result
store, callbacks) happens in a greenlet on the loop, and its coroutine is awaited by the loop
itself (``engine.asyncrun.Bridge``), so a thousand waiting tasks cost a thousand coroutines and
greenlets, not threads. Plain ``def`` tasks on the same worker run in a thread pool, so they never
block the loop. The pool speaks the same ``Pool`` interface as ``ThreadPool``: jobs come in through
``submit``; the host's ``on_start``/``on_done``/``on_lost`` settle them.

Limits and terminate reach the coroutine where it waits: a soft limit raises
``SoftTimeLimitExceeded`` there, a hard limit cancels it and the task fails with
``TimeLimitExceeded``, ``revoke(terminate=True)`` cancels it and the task ends REVOKED.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any

from engine import aio, trace
from engine.asyncrun import Bridge, Terminated
from engine.exceptions import ImproperlyConfigured
from engine.extras import install_hint
from engine.worker.deadline import CLOSE_WAIT, Deadline
from engine.worker.limits import ThreadLimiter, exceeded
from engine.worker.pool import Pool, run_on_thread

if TYPE_CHECKING:
    from engine.task import Task
    from engine.trace import Outcome
    from engine.worker.job import Job
    from engine.worker.pool import PoolHost

log = logging.getLogger("engine.worker")
SYNC_THREADS = 64  # threads for plain ``def`` tasks (at most -c); they start on demand
START_THREADS = 8  # threads for ``on_start`` (its broker claim), so the loop never waits on it


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (a third less CPU per task), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()  # type: ignore[no-any-return]


def is_async(task: Task) -> bool:
    """An ``async def`` task (or a base whose ``__call__`` is a coroutine function)."""
    return inspect.iscoroutinefunction(task.run) or inspect.iscoroutinefunction(type(task).__call__)


class AsyncioPool(Pool):
    kind = "asyncio"

    def __init__(self, host: PoolHost, concurrency: int) -> None:
        try:
            import greenlet  # noqa: F401
        except ImportError:
            raise ImproperlyConfigured(f"the asyncio pool needs greenlet: {install_hint('asyncio')}") from None
        self.host = host
        self._limit = concurrency
        self._loop = new_loop()
        self._thread = threading.Thread(target=self._serve, name="asyncio-pool", daemon=True)
        self._waiting: deque[Job] = deque()
        # by job, not task id: a retry of the same id may arrive while this run is still storing
        self._running: dict[Job, tuple[asyncio.Task[None], Bridge | None]] = {}
        self._closing = False  # warm stop: start nothing more
        self._dead = False  # cold stop: settle nothing more
        self._sync = DaemonThreads(min(concurrency, SYNC_THREADS), "pool")
        self._starts = DaemonThreads(START_THREADS, "pool-start")
        self._limiter = ThreadLimiter()

    # -- lifecycle (called from the worker's threads) --------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
            self._loop.run_until_complete(aio.close_loop_clients())
        except Exception as exc:  # closing connections at exit is best effort
            log.debug("asyncio pool: closing its connections failed: %r", exc)
        finally:
            self._loop.close()

    def submit(self, job: Job) -> None:
        self._loop.call_soon_threadsafe(self._accept, job)

    def run_main(self, stopping: threading.Event) -> None:
        stopping.wait()

    def stop(self, timeout: float) -> list[Job]:
        """Warm: start nothing more, let what runs finish (up to ``timeout``), hand back the rest."""
        try:
            left = asyncio.run_coroutine_threadsafe(self._drain(timeout), self._loop).result(timeout + 10)
        except Exception as exc:  # the loop is gone or stuck: hand back everything it held
            log.warning("asyncio pool did not stop in time: %r", exc)
            return self.terminate(Deadline(CLOSE_WAIT, "stop"))  # which closes the loop too
        self._close(Deadline(CLOSE_WAIT, "stop"))
        return left

    def terminate(self, deadline: Deadline) -> list[Job]:
        """Cold: cancel every coroutine; every job not finished goes back to the worker."""
        self._dead = self._closing = True
        jobs = list(self._waiting) + list(self._running)
        self._waiting.clear()
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._cancel_all)
        self._close(deadline)
        return jobs

    def _close(self, deadline: Deadline) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not threading.current_thread():
            deadline.join(self._thread, "the asyncio pool's event loop")
        self._sync.shutdown(wait=False)
        self._starts.shutdown(wait=False)
        self._limiter.stop()

    def size(self) -> int:
        return self._limit

    def grow(self, n: int) -> int:
        self._limit += n
        self._loop.call_soon_threadsafe(self._next)
        return self._limit

    def shrink(self, n: int) -> int:
        self._limit = max(1, self._limit - n)
        return self._limit

    def processes(self) -> list[int]:
        return [os.getpid()]

    def kill_job(self, task_id: str, signum: int) -> bool:
        """``revoke(terminate=True)``: cancel the task's coroutine (any signal); a plain ``def``
        task in the thread pool cannot be stopped from outside, as with ``-P threads``."""
        bridges = [bridge for job, (_, bridge) in list(self._running.items()) if job.id == task_id and bridge]
        for bridge in bridges:
            exc = Terminated(f"terminated (signal {signum})")
            self._loop.call_soon_threadsafe(bridge.interrupt, exc, True)
        return bool(bridges)

    # -- on the loop ------------------------------------------------------------------------------
    def _accept(self, job: Job) -> None:
        self._waiting.append(job)
        self._next()

    def _next(self) -> None:
        while self._waiting and len(self._running) < self._limit and not self._closing:
            job = self._waiting.popleft()
            bridge = Bridge([job.task._requests, self.host.app.current_requests]) if is_async(job.task) else None
            task = self._loop.create_task(self._run(job, bridge))
            self._running[job] = (task, bridge)

    async def _drain(self, timeout: float) -> list[Job]:
        self._closing = True
        left = list(self._waiting)
        self._waiting.clear()
        tasks = [task for task, _ in self._running.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        left += list(self._running)
        self._dead = True
        self._cancel_all()
        return left

    def _cancel_all(self) -> None:
        for task, _ in list(self._running.values()):
            task.cancel()

    async def _run(self, job: Job, bridge: Bridge | None) -> None:
        try:
            if bridge is None:
                await self._loop.run_in_executor(self._sync, self._run_sync, job)
            elif await self._loop.run_in_executor(self._starts, self.host.on_start, job):
                await self._run_async(job, bridge)
        except asyncio.CancelledError:
            if not self._dead:
                raise
        except Exception:  # settling failed: logged; the loop lives on
            log.exception("settling %s[%s] failed", job.name, job.id)
        finally:
            self._running.pop(job, None)
            self._next()

    async def _run_async(self, job: Job, bridge: Bridge) -> None:
        def fire(limit: float, hard: bool) -> None:
            bridge.interrupt(exceeded(limit, hard, job.name, job.id), hard)

        limits = ((job.soft_limit, False), (job.hard_limit, True))
        timers = [self._loop.call_later(limit, fire, limit, hard) for limit, hard in limits if limit]
        outcome: Outcome
        try:
            outcome = await bridge.run(trace.run, self.host.app, job.task, job.request(self.host.hostname))
        except Terminated as exc:
            self.host.on_lost(job, "worker_lost", exc)
            return
        except Exception as exc:  # outside trace's own net: still an outcome
            outcome = trace.internal_error(exc)
        finally:
            for timer in timers:
                timer.cancel()
        if not self._dead:
            self.host.on_done(job, outcome)

    def _run_sync(self, job: Job) -> None:
        """A plain ``def`` task, on a pool thread: as ``ThreadPool`` runs it."""
        if self._dead or not self.host.on_start(job):
            return
        outcome = run_on_thread(self.host, job, self._limiter)
        if not self._dead:
            self.host.on_done(job, outcome)


class DaemonThreads(Executor):
    """Up to ``most`` daemon threads, started on demand, for blocking calls. Unlike
    ``ThreadPoolExecutor``'s they never hold up the process's exit: a cold stop hands their jobs
    back and leaves them, as ``-P threads`` does."""

    def __init__(self, most: int, name: str) -> None:
        self._most, self._name = most, name
        self._calls: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._calls.put((future, fn, args))
        with self._lock:
            if self._idle == 0 and len(self._threads) < self._most:
                thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                thread.start()
                self._threads.append(thread)
            else:
                self._idle -= 1  # that call is taken by an idle thread
        return future

    def _work(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            future, fn, args = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # noqa: B036 - handed to whoever awaits the future
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._calls.put(None)
        if wait:
            for thread in threads:
                thread.join()
