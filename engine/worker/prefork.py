"""The prefork pool: tasks run in forked child processes, one task per child at a time.

The parent keeps everything that must survive a child's death: which job each child holds,
its hard deadline, and the message. A child that dies or overruns its hard limit is replaced
and its job reported lost, so the worker can requeue or fail it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import pickle
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import engine.backend.redis  # noqa: F401  imported once here, shared by every child (not once per child)
from engine import signals, trace
from engine.exceptions import TimeLimitExceeded, WorkerLostError
from engine.worker.limits import alarm_limits
from engine.worker.wire import Finished, RunOrder

if TYPE_CHECKING:
    from engine.worker.job import Job
    from engine.worker.pool import PoolHost

log = logging.getLogger("engine.worker")
_fork = multiprocessing.get_context("fork")
# Plain pickle both ways (multiprocessing's ``send`` builds a ForkingPickler per message).
_loads = pickle.loads


def _dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


PARENT_CHECK = 1.0  # seconds between a child's looks at whether its parent still lives


def _die_with_parent(parent: int) -> None:
    """Exit when the worker is gone, even mid-task: SIGKILL of the parent (the OOM killer) closes
    no pipe we would notice (later children hold copies of the parent's ends) and runs no cleanup.

    A parent-pid check on a thread rather than ``PR_SET_PDEATHSIG``: that signal fires when the
    *thread* that forked exits, and replacement children are forked by the collector thread.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK)
        os._exit(1)  # our results have nowhere to go; the broker's reaper hands the message back

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _child_main(conn: Connection, host: PoolHost, parent: int | None = None) -> None:
    """Loop in the child: receive a job, run it, send the outcome back."""
    if parent is not None:
        _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    app = host.app
    signals.worker_process_init.send(sender=host.hostname)
    try:
        _serve_child(conn, app)
    finally:
        signals.worker_process_shutdown.send(sender=host.hostname, pid=os.getpid(), exitcode=0)


def _serve_child(conn: Connection, app: Any) -> None:
    while True:
        try:
            item = _loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if item is None:
            return
        order: RunOrder = item
        try:
            with alarm_limits(order.soft_limit, None):
                o = trace.run(app, app.tasks[order.name], order.request.build())
        except Exception as exc:  # outside trace's own net (the limits, the request): still an outcome
            o = trace.internal_error(exc)
        # Results stay in the backend; only the summary crosses the pipe.
        conn.send_bytes(_dumps(Finished.of(order.key, o)))


@dataclass(eq=False)
class Child:
    process: Any
    conn: Connection
    job: Job | None = None
    deadline: float | None = None
    retiring: bool = False
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return int(self.process.pid)


class PreforkPool:
    kind = "prefork"

    def __init__(self, host: PoolHost, concurrency: int) -> None:
        self.host = host
        self._target = concurrency
        self._children: list[Child] = []
        self._queue: deque[Job] = deque()
        self._lock = threading.RLock()
        self._accepting = True
        self._wake_r, self._wake_w = os.pipe()
        self._collector = threading.Thread(target=self._collect, name="prefork", daemon=True)
        self._stopped = threading.Event()
        self._generation = 0  # bumped whenever ``_children`` changes: the collector re-polls

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            for _ in range(self._target):
                self._spawn()
        self._collector.start()

    def _spawn(self) -> Child:
        # Objects alive now move to the permanent generation: the children's collector then never
        # writes to them, so their pages stay shared (copy-on-write) instead of being copied.
        gc.freeze()
        parent_end, child_end = _fork.Pipe(duplex=True)
        process = _fork.Process(
            target=_child_main, args=(child_end, self.host, os.getpid()), daemon=True, name="tqctl-pool"
        )
        process.start()
        child_end.close()
        child = Child(process, parent_end)
        self._children.append(child)
        self._generation += 1
        return child

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    # -- dispatch -----------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        with self._lock:
            self._queue.append(job)
            self._dispatch()

    def _dispatch(self) -> None:
        for child in self._children:
            # ``while``: a job the host skips (revoked, or no longer ours) leaves the child free
            # for the next one; otherwise the queue waits for an unrelated submit.
            while (
                self._queue
                and self._accepting
                and child.job is None
                and not child.retiring
                and child.process.is_alive()
            ):
                job = self._queue.popleft()
                job.worker_pid = child.pid
                if self.host.on_start(job):
                    self._send(child, job)
            if not self._queue or not self._accepting:
                return

    def _send(self, child: Child, job: Job) -> None:
        child.job = job
        hard = job.hard_limit
        child.deadline = time.monotonic() + hard if hard else None
        try:
            order = RunOrder(
                key=id(job), name=job.name, soft_limit=job.soft_limit, request=job.request_fields(self.host.hostname)
            )
            child.conn.send_bytes(_dumps(order))
        except (OSError, ValueError):
            pass  # the collector sees the dead child and reports the job lost
        except Exception as exc:  # the job cannot be sent (a bug): it ends now, with the reason
            child.job, child.deadline = None, None
            _report(self.host.on_done, job, trace.internal_error(exc))
            return
        if hard:
            self._wake()

    # -- collection ---------------------------------------------------------------------------
    def _collect(self) -> None:
        """The collector thread: it must never die, or no outcome would be settled again while the
        worker kept heartbeating. An error in one pass is logged and the next pass starts afresh."""
        while not self._stopped.is_set():
            try:
                self._collect_loop()
            except Exception:
                log.exception("prefork collector error; carrying on")
                self._stopped.wait(0.5)

    def _collect_loop(self) -> None:
        # One poll object, re-registered only when the set of children changes (not per wake-up).
        poller, watched = select.poll(), -1
        conns: dict[int, Child] = {}
        sentinels: dict[int, Child] = {}
        poller.register(self._wake_r, select.POLLIN)
        while not self._stopped.is_set():
            with self._lock:
                if watched != self._generation:
                    for fd in (*conns, *sentinels):
                        with contextlib.suppress(KeyError, ValueError):
                            poller.unregister(fd)
                    conns = {c.conn.fileno(): c for c in self._children}
                    sentinels = {c.process.sentinel: c for c in self._children}
                    for fd in (*conns, *sentinels):
                        poller.register(fd, select.POLLIN)
                    watched = self._generation
                deadlines = [c.deadline for c in self._children if c.deadline]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 1.0
            ready = [fd for fd, _ in poller.poll(min(timeout, 1.0) * 1000)]
            for fd in ready:
                if fd == self._wake_r:
                    os.read(self._wake_r, 512)
                elif fd in conns:
                    self._receive(conns[fd])
            for fd in ready:
                if fd in sentinels:
                    self._reap(sentinels[fd])
            self._enforce_deadlines()

    def _receive(self, child: Child) -> None:
        try:
            finished: Finished = _loads(child.conn.recv_bytes())
        except (EOFError, OSError):
            return
        outcome = finished.outcome()
        with self._lock:
            job, child.job, child.deadline = child.job, None, None
            if child.retiring:
                self._retire(child)
            self._dispatch()  # the next job first: the child works while we settle this one
        if job is not None:
            _report(self.host.on_done, job, outcome)

    def _reap(self, child: Child) -> None:
        with self._lock:
            if child not in self._children:
                return
            self._children.remove(child)
            self._generation += 1
            job, child.job = child.job, None
            code = child.process.exitcode
            replace = self._accepting and not child.retiring
            if replace and len(self._children) < self._target:
                self._spawn()
        child.conn.close()
        if job is not None:
            reason = f"child process {child.pid} exited with {_describe(code)}"
            _report(self.host.on_lost, job, "worker_lost", WorkerLostError(reason))
        with self._lock:
            self._dispatch()

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [c for c in self._children if c.deadline and c.deadline <= now and c.job]
        for child in late:
            job = child.job
            with self._lock:
                child.job, child.deadline = None, None
                if child in self._children:
                    self._children.remove(child)
                    self._generation += 1
                    if self._accepting:
                        self._spawn()
            _kill(child.pid, signal.SIGKILL)
            child.process.join(5)
            child.conn.close()
            if job is not None:
                limit = job.hard_limit
                _report(self.host.on_lost, job, "time_limit", TimeLimitExceeded(f"hard time limit ({limit}s) exceeded"))
            with self._lock:
                self._dispatch()

    # -- sizing -------------------------------------------------------------------------------
    def size(self) -> int:
        with self._lock:
            return sum(1 for c in self._children if not c.retiring)

    def grow(self, n: int) -> int:
        with self._lock:
            for _ in range(max(n, 0)):
                self._spawn()
            self._target = self.size()
            self._dispatch()
        self._wake()
        return self._target

    def shrink(self, n: int) -> int:
        with self._lock:
            active = [c for c in self._children if not c.retiring]
            n = min(max(n, 0), len(active) - 1)
            # Idle children first, so shrinking never waits on a long task if it can avoid it.
            for child in sorted(active, key=lambda c: c.job is not None)[:n]:
                child.retiring = True
                if child.job is None:
                    self._retire(child)
            self._target = self.size()
        self._wake()
        return self._target

    def _retire(self, child: Child) -> None:
        try:
            child.conn.send_bytes(_dumps(None))
        except (OSError, ValueError):
            pass

    def processes(self) -> list[int]:
        with self._lock:
            return [c.pid for c in self._children if c.process.is_alive()]

    def kill_job(self, task_id: str, signum: int) -> bool:
        with self._lock:
            child = next((c for c in self._children if c.job and c.job.id == task_id), None)
        if child is None:
            return False
        _kill(child.pid, signum)
        return True

    def run_main(self, stopping: threading.Event) -> None:
        stopping.wait()

    # -- shutdown -----------------------------------------------------------------------------
    def stop(self, timeout: float) -> list[Job]:
        """Warm: hand back queued jobs, let running ones finish (up to ``timeout``)."""
        with self._lock:
            self._accepting = False
            left = list(self._queue)
            self._queue.clear()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not any(c.job for c in self._children):
                    break
            time.sleep(0.02)
        return left + self._close()

    def terminate(self) -> list[Job]:
        """Cold: stop everything now; every queued and running job is handed back."""
        with self._lock:
            self._accepting = False
            left = list(self._queue)
            self._queue.clear()
        return left + self._close()

    def _close(self) -> list[Job]:
        self._stopped.set()
        self._wake()
        if self._collector.is_alive():
            self._collector.join(2)
        with self._lock:
            children = list(self._children)
            self._children.clear()
            self._generation += 1
        unfinished = [c.job for c in children if c.job is not None]
        for child in children:
            self._retire(child)
        for child in children:
            child.process.join(0.5 if child.job is None else 0)
            if child.process.is_alive():
                _kill(child.pid, signal.SIGKILL)
                child.process.join(2)
        return unfinished


def _report(call: Callable[..., None], *args: Any) -> None:
    """Tell the worker about a job; its failure is logged, never allowed to end the collector."""
    try:
        call(*args)
    except Exception:
        log.exception("settling a job failed")


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _describe(code: int | None) -> str:
    if code is None:
        return "an unknown status"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
