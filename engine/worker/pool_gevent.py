"""``-P gevent``: N greenlets in the worker process, for tasks that wait on sockets.

The process is monkey-patched before anything else is imported (``tqctl.__main__``, as Celery's
entry point does), so ``threading`` here is greenlets: the N long-lived "threads" below are
greenlets pulling jobs from one queue, and every socket wait (the broker, the result store, a
task's HTTP call) yields to the others. Long-lived, not one greenlet per task: per-thread Redis
connections then number N, not one per task.

Limits are ``gevent.Timeout``s raised in the task's greenlet where it waits (soft:
``SoftTimeLimitExceeded``, which the task may catch; hard: ``TimeLimitExceeded``);
``revoke(terminate=True)`` throws ``Terminated`` into it and the task ends REVOKED.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import TYPE_CHECKING, Any

from engine import trace
from engine.asyncrun import Terminated
from engine.exceptions import ImproperlyConfigured
from engine.extras import install_hint
from engine.worker.deadline import CLOSE_WAIT, Deadline
from engine.worker.limits import exceeded
from engine.worker.pool import Pool, drain, start_threads

if TYPE_CHECKING:
    from engine.trace import Outcome
    from engine.worker.job import Job
    from engine.worker.pool import PoolHost

log = logging.getLogger("engine.worker")


def _gevent() -> Any:
    try:
        import gevent
        import gevent.monkey
    except ImportError:
        raise ImproperlyConfigured(f"the gevent pool needs gevent: {install_hint('gevent')}") from None
    if not gevent.monkey.is_module_patched("socket"):
        raise ImproperlyConfigured(
            "the gevent pool needs the process monkey-patched before anything is imported: "
            "start it with `tqctl worker -P gevent`"
        )
    return gevent


class GeventPool(Pool):
    kind = "gevent"

    def __init__(self, host: PoolHost, concurrency: int) -> None:
        self._gevent = _gevent()
        self.host = host
        self._target = concurrency
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._running: dict[str, tuple[Job, Any]] = {}  # task id -> (job, its greenlet)
        self._in_task: set[str] = set()  # inside trace.run: where terminate may reach them
        self._dead = False

    def start(self) -> None:
        self.grow(self._target)

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def run_main(self, stopping: threading.Event) -> None:
        stopping.wait()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None or self._dead:
                return
            self._running[job.id] = (job, self._gevent.getcurrent())
            try:
                self._run(job)
            except Exception:  # settling failed: logged; the greenlet lives on
                log.exception("settling %s[%s] failed", job.name, job.id)
            finally:
                self._running.pop(job.id, None)

    def _run(self, job: Job) -> None:
        if not self.host.on_start(job):
            return
        timers = self._arm_limits(job)
        outcome: Outcome
        self._in_task.add(job.id)
        try:
            outcome = trace.run(self.host.app, job.task, job.request(self.host.hostname))
        except Terminated as exc:
            self.host.on_lost(job, "worker_lost", exc)
            return
        except Exception as exc:  # outside trace's own net: still an outcome
            outcome = trace.internal_error(exc)
        finally:
            self._in_task.discard(job.id)
            for timer in timers:
                timer.close()
        if not self._dead:
            self.host.on_done(job, outcome)

    def _arm_limits(self, job: Job) -> list[Any]:
        """Hub timers that, at a limit, log it and throw its exception into this greenlet (as a
        ``gevent.Timeout`` would, but with the exception made, and the line logged, as it fires)."""
        here = self._gevent.getcurrent()
        loop = self._gevent.get_hub().loop

        def fire(limit: float, hard: bool) -> None:
            here.throw(exceeded(limit, hard, job.name, job.id))

        timers = []
        for limit, hard in ((job.soft_limit, False), (job.hard_limit, True)):
            if limit:
                timer = loop.timer(limit)
                timer.start(fire, limit, hard, update=True)
                timers.append(timer)
        return timers

    def stop(self, timeout: float) -> list[Job]:
        """Warm: queued jobs go back, running ones finish (up to ``timeout``, then are handed back)."""
        left = drain(self._jobs)
        threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        for thread in threads:
            thread.join(timeout)
        if self._running:
            left += self.terminate(Deadline(CLOSE_WAIT, "stop"))
        return left

    def terminate(self, deadline: Deadline) -> list[Job]:
        """Cold: stop every greenlet where it waits; what it held goes back to the worker."""
        self._dead = True
        running = list(self._running.values())
        for _, glet in running:
            self._gevent.kill(glet, self._gevent.GreenletExit)
        return drain(self._jobs) + [job for job, _ in running]

    def size(self) -> int:
        self._threads = [t for t in self._threads if t.is_alive()]
        return len(self._threads)

    def grow(self, n: int) -> int:
        return start_threads(self._threads, self._loop, n)

    def shrink(self, n: int) -> int:
        n = max(min(n, len(self._threads) - 1), 0)
        for _ in range(n):
            self._jobs.put(None)
        return len(self._threads) - n

    def processes(self) -> list[int]:
        return [os.getpid()]

    def kill_job(self, task_id: str, signum: int) -> bool:
        """``revoke(terminate=True)``: raise ``Terminated`` in the task's greenlet (any signal)."""
        found = self._running.get(task_id)
        if found is None or task_id not in self._in_task:
            return False
        self._gevent.kill(found[1], Terminated(f"terminated (signal {signum})"))
        return True
