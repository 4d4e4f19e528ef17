"""The prefork pool: tasks run in forked child processes, one task per child at a time.

Jobs go into one **shared in-queue** (a packet pipe every child reads from, without a lock), so
a child that finishes takes the next job at once instead of waiting for the parent to wake up,
read its outcome and send it another: that chain of wake-ups per task was the drain's limit.
The parent admits each job (revoked? stopping? still ours?) as it goes in; the consumer's
prefetch window bounds how many wait there.

Each child reports the job it takes (``Started``) before running it and its outcome
(``Finished``) after, on a pipe of its own. The parent keeps everything that must survive a
child's death: which job each child holds (crash accounting), its hard deadline (counted from
the child's start), and ``task-started``. Revokes and warm shutdown reach a job still waiting in
the queue through shared memory the child reads before it starts: a cancelled job is reported
``Started(ran=False)`` and never runs. An order too large for one packet goes to a free
child's own inbox instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import itertools
import logging
import mmap
import multiprocessing
import os
import pickle
import select
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Protocol

import engine.backend.redis  # noqa: F401  imported once here, shared by every child (not once per child)
from engine import signals, trace
from engine.exceptions import WorkerLostError
from engine.worker.child import PACKET, SLOTS, STOP, ChildEnds, Shared, child_main, dumps
from engine.worker.deadline import CLOSE_WAIT, Deadline
from engine.worker.limits import hard_exceeded
from engine.worker.pool import Pool, PoolHost
from engine.worker.recycle import RECYCLE, RecycleLimits
from engine.worker.shared_books import SharedBooks
from engine.worker.slots import DONE as DONE_SLOT
from engine.worker.slots import RUNNING as RUNNING_SLOT
from engine.worker.slots import TAKEN as TAKEN_SLOT
from engine.worker.slots import Slots
from engine.worker.turn import FetchTurn
from engine.worker.wire import NO_FENCE, Finished, RunOrder, Started, order_to_wire, report_from_wire

if TYPE_CHECKING:
    from engine.broker.base import Broker
    from engine.events.dispatcher import EventDispatcher
    from engine.worker.job import Job
    from engine.worker.maintenance import Maintenance
    from engine.worker.observers import Observers

log = logging.getLogger("engine.worker")
_fork = multiprocessing.get_context("fork")
_loads = pickle.loads
_dumps = dumps
RECHECK = -2  # a job's epoch after a child found its lease stale: the parent asks the broker
PIPE_SIZE = 1 << 20  # asked of the kernel for the shared queue (best effort; F_SETPIPE_SZ)
F_SETPIPE_SZ = 1031  # linux/fcntl.h
# Packet pipes (Linux), whose packets are a page: a write of several orders is cut at page bounds.
PACKETS = hasattr(os, "O_DIRECT") and hasattr(os, "pipe2") and PACKET == mmap.PAGESIZE
REAP_WAIT = 1.0  # seconds for an exiting child's status (read to tell a retirement from a crash)
KILLED_WAIT = 2.0  # seconds, in all, for children killed at a stop to be reaped (SIGKILL is not ignored)
# The parent's threads (fetch, the children's reports, upkeep) each run in short bursts. A thread
# woken by a message waits for the GIL behind a running one for up to this long (Python's
# default is 5 ms): at 200 tasks/s, 0.5 ms took publish-to-start p99 from 1.04-1.09 ms to
# 0.97-1.01 ms, with the drain rate and CPU per task unchanged. Children put back the one the
# process had: a task's own threads switch as they would anywhere else.
SWITCH_INTERVAL = 0.0005
STOP_POLL = 0.02  # seconds between looks at whether running jobs finished, in a warm stop
QUEUED, RUNNING = "queued", "running"
LANES, SLOTS_PER_LANE = 64, 128  # work-sharing children: slot ranges, one per live child


class PreforkHost(PoolHost, Protocol):
    """What the prefork pool needs beyond ``PoolHost``: admission and start are two steps here
    (a job is admitted when it enters the shared queue, started when a child reports it); and the
    worker's parts it reaches for its children: the recycle limits each child counts against,
    the broker and owner a work-sharing child fetches under (and whose books and observers it
    keeps in the parent's stead), the upkeep told when a message a child parked falls due."""

    broker: Broker
    owner: str
    recycle: RecycleLimits
    active: dict[str, Job]
    processed: dict[str, int]
    maintenance: Maintenance
    observers: Observers
    events: EventDispatcher

    def admit(self, job: Job) -> bool: ...
    def on_started(self, job: Job, at: float | None = None) -> None: ...
    def on_skipped(self, job: Job) -> None: ...


@dataclass(eq=False)
class Child:
    process: Any
    conn: Connection  # the parent's end of this child's report pipe
    inbox: Connection  # orders too large for the shared queue's packets, for this child only
    inbox_busy: bool = False  # an order sits in its inbox, not yet reported started
    job: Job | None = None
    slot: int = 0
    deadline: float | None = None
    lane: int = -1  # its range of slots (work-sharing children only)
    recycling: bool = False  # said it exits after its last task (``recycle``): not a crash
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return int(self.process.pid)


@dataclass(eq=False)
class Sent:
    """A job in the shared queue or running: its slot's state, as the parent knows it."""

    job: Job
    state: str = QUEUED
    revoked: bool = False
    inbox_of: Child | None = None  # sent to this child's inbox, not the shared queue


class PreforkPool(Pool):
    kind = "prefork"

    def __init__(self, host: PreforkHost, concurrency: int) -> None:
        self.host = host
        self._target = concurrency
        self._children: list[Child] = []
        self._waiting: deque[Job] = deque()  # submitted, not yet in the shared queue
        self._sent: dict[int, Sent] = {}  # slot -> job in the shared queue or running
        self._free = list(range(SLOTS - 1, STOP, -1))
        self._queued = 0  # slots in state QUEUED
        self._big: tuple[int, Job, bytes] | None = None  # admitted, waiting for an idle child
        self._unstarted: list[Job] = []  # skipped by a child because the pool stops: handed back
        self._retiring = 0  # retire tokens in the shared queue, not yet taken by a child
        self._rehomed: set[str] = set()  # ids of admitted jobs a recycled child left unstarted: not admitted again
        self._batching = 0  # inside ``batch``: submitted jobs wait for its end
        self._lock = threading.RLock()
        self._accepting = True
        self._shared = Shared()
        # A packet pipe: every write of at most PACKET bytes is read whole by one reader. Where
        # there are none (not Linux), every order goes to a free child's inbox instead.
        self._packets = PACKETS
        if self._packets:
            self._inq_r, self._inq_w = os.pipe2(os.O_DIRECT | os.O_CLOEXEC)
        else:
            self._inq_r, self._inq_w = os.pipe()
        os.set_blocking(self._inq_r, False)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._inq_w, F_SETPIPE_SZ, PIPE_SIZE)
        self._wake_r, self._wake_w = os.pipe()
        self._collector = threading.Thread(target=self._collect, name="prefork", daemon=True)
        self._stopped = threading.Event()
        self._task_switch_interval = sys.getswitchinterval()
        self._generation = 0  # bumped whenever ``_children`` changes: the collector re-polls
        # Work-sharing children (issue 17 branch work; Redis only): they fetch for themselves.
        self.fetches_itself = False  # decided at ``start``, once the worker's listeners are attached
        self._lost_jobs = itertools.count()  # "Job: N." numbers lost jobs: the parent does not see every job start
        self._slots: Slots | None = None
        self._turn: FetchTurn | None = None  # the Feeder's and the children's turns to fetch (engine.worker.turn)
        self.shared: SharedBooks | None = None  # the children's books, when they fetch for themselves
        self._feeder: Any = None
        self._closing = threading.Lock()  # ``_close`` runs once, from a warm or a cold stop
        self._closed: list[Job] | None = None  # what it returned
        self._timed_out: dict[int, float] = {}  # work-sharing children killed at a hard limit

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        sys.setswitchinterval(SWITCH_INTERVAL)  # the pool's process is the worker's: its setting
        self.fetches_itself = _can_share(self.host)
        if self.fetches_itself:
            self._slots = Slots(LANES, SLOTS_PER_LANE)
            self._turn = FetchTurn()
            self.shared = SharedBooks(self.host, self._slots, self._children_now)
        with self._lock:
            for _ in range(self._target):
                self._spawn()
        self._collector.start()
        if self._slots is not None:
            from engine.worker.sharing import Feeder

            self._feeder = Feeder(self.host, self._slots, LANES - 1, self._inq_w, self._turn)  # type: ignore[arg-type]
            self._feeder.thread.start()

    def _spawn(self) -> Child:
        # Objects alive now move to the permanent generation: the children's collector then never
        # writes to them, so their pages stay shared (copy-on-write) instead of being copied.
        gc.freeze()
        signals.worker_before_create_process.send(sender=self)  # as Celery's pool, in the parent
        parent_end, child_end = _fork.Pipe(duplex=False)
        inbox_r, inbox_w = _fork.Pipe(duplex=False)
        ends = ChildEnds(self._inq_r, inbox_r, child_end, self._shared, self._task_switch_interval)
        lane = -1
        if self.fetches_itself:
            from engine.worker.sharing import sharing_child_main

            lane = min(set(range(LANES - 1)) - {c.lane for c in self._children})  # the last: the parent's
            own = self.host.broker.for_child()  # type: ignore[attr-defined]  # see sharing_child_main
            args: tuple[Any, ...] = (ends, self._inq_w, self._slots, lane, self.host, os.getpid(), own, self._turn)
            process = _fork.Process(target=sharing_child_main, args=args, daemon=True, name="tqctl-pool")
        else:
            process = _fork.Process(
                target=child_main, args=(ends, self.host, os.getpid()), daemon=True, name="tqctl-pool"
            )
        process.start()
        child_end.close()
        inbox_r.close()
        child = Child(process, parent_end, inbox_w, lane=lane)
        self._children.append(child)
        self._generation += 1
        return child

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    # -- into the shared queue ----------------------------------------------------------------
    def submit(self, job: Job) -> None:
        with self._lock:
            self._waiting.append(job)
            if not self._batching:
                self._feed()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Jobs submitted inside go into the shared queue together at its end, in one write: one
        system call and one wake-up of the waiting children per fetched batch, not per job."""
        with self._lock:
            self._batching += 1
        try:
            yield
        finally:
            with self._lock:
                self._batching -= 1
                if not self._batching:
                    self._feed()

    def _feed(self) -> None:
        """Move submitted jobs into the shared queue (the consumer's prefetch window bounds them),
        so children keep working while the parent waits on the broker; early-ack and large jobs
        only when a child is free for them. Called with the lock held."""
        packets: list[bytes] = []
        try:
            self._admit_waiting(packets)
        finally:
            self._write(packets)

    def _admit_waiting(self, packets: list[bytes]) -> None:
        """``_feed``'s loop: the orders for the shared queue are added to ``packets``."""
        while self._accepting:
            if self._big is not None:
                slot, job, data = self._big
                idle = (c for c in self._children if c.job is None and not c.inbox_busy and not c.recycling)
                child = next(idle, None)
                if child is None:
                    return  # waits for a free child (``_finished``)
                self._big = None
                self._put(slot, job, data, child)
                continue
            if not self._waiting or not self._free:
                return
            head = self._waiting[0]
            checked_now = not head.acks_late or head.epoch == RECHECK
            if checked_now and self._queued >= self._idle():
                # Early ack (the claim takes the message's record) or a late-ack job the broker
                # must confirm: claimed only when a child is free to start it at once. A job lined
                # up behind a busy pool stays in the broker's in-flight record (handed back if we
                # die), and one confirmed now is not left to go stale in the queue.
                return
            job = self._waiting.popleft()
            if job.id in self._rehomed:
                self._rehomed.discard(job.id)  # admitted (an early ack claimed) before: not twice
            elif not self.host.admit(job):
                continue  # never runs here: settled, or left for the hand-back, by the host
            slot = self._free.pop()
            try:
                raw = job.message.raw
                order = RunOrder(
                    key=slot,
                    name=job.name,
                    soft_limit=job.soft_limit,
                    request=raw if raw else job.request_fields(self.host.hostname),
                    epoch=NO_FENCE if checked_now else job.epoch,
                    hard_limit=job.hard_limit,
                    ignore_result=job.ignores_result(),
                )
                data = _dumps(order_to_wire(order))
            except Exception as exc:  # the job cannot be sent (a bug): it ends now, with the reason
                self._free.append(slot)
                _report(self.host.on_done, job, trace.internal_error(exc))
                continue
            if len(data) > PACKET or not self._packets:
                self._big = (slot, job, data)
                continue
            self._book(slot, job)
            packets.append(data)

    def _book(self, slot: int, job: Job, child: Child | None = None) -> None:
        """Record a job as queued in ``slot``, before its order can reach a child."""
        self._shared.cancel[slot] = 0
        self._shared.taken[slot] = 0
        self._sent[slot] = Sent(job, inbox_of=child)
        self._queued += 1

    def _put(self, slot: int, job: Job, data: bytes, child: Child) -> None:
        """An order too large for a packet, to an idle child's own inbox."""
        self._book(slot, job, child)
        try:
            child.inbox_busy = True
            child.inbox.send_bytes(data)
        except (OSError, ValueError):
            pass  # closed: the pool is stopping (handed back from ``_sent``), or the child died (reaped)

    def _write(self, packets: list[bytes]) -> None:
        """Orders into the shared queue, each one packet. Several go in one write, each padded to a
        whole packet: the kernel cuts a packet pipe's write into packets of a page, and a child's
        unpickling stops at the order's end, ignoring the padding."""
        if not packets:
            return
        data = packets[0] if len(packets) == 1 else b"".join(p.ljust(PACKET, b"\0") for p in packets)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._inq_w, view) :]
        except (OSError, ValueError):
            pass  # closed: the pool is stopping (handed back from ``_sent``)

    def _size(self) -> int:
        return len(self._children) - self._retiring

    def _idle(self) -> int:
        return sum(1 for c in self._children if c.job is None and not c.recycling) - self._retiring

    def lease(self, epoch: int, until: float) -> None:
        """Children start jobs on their own: each checks the lease in shared memory first."""
        self._shared.set_lease(epoch, until)

    def cancel(self, task_ids: Iterable[str]) -> None:
        """Revoked: a job still waiting in the shared queue is not started by the child taking it."""
        if self.shared is not None:  # each child sorts what it takes: it needs the revoke itself
            self.shared.tell(("revoke", list(task_ids)))
            return
        with self._lock:
            if not self._queued:
                return
            waiting = {s.job.id: slot for slot, s in self._sent.items() if s.state == QUEUED}
            for task_id in task_ids:
                slot = waiting.get(task_id)
                if slot is not None:
                    self._sent[slot].revoked = True
                    self._shared.cancel[slot] = 1

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
                deadlines = [c.deadline for c in self._children if c.deadline] + self._slot_deadlines()
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
            if deadlines:  # one set during this pass wakes the next (``_started``), none is due yet
                self._enforce_deadlines()

    def _receive(self, child: Child) -> bool:
        """One write of the child: a ``Started``, a ``Finished``, or a finish and the next start;
        from a work-sharing child, the tasks it processed since its last report, by name. A
        child due for recycling puts ``RECYCLE`` first (before its last ``Finished``, if any).
        False when the pipe is closed (the child is gone)."""
        try:
            reports = _loads(child.conn.recv_bytes())
        except (EOFError, OSError):
            return False
        if isinstance(reports, tuple) and reports and reports[0] == "due":
            self.host.maintenance.expect_due(reports[1])
            return True
        if isinstance(reports, dict):
            processed = self.host.processed
            for name, n in reports.items():
                processed[name] = processed.get(name, 0) + n
            return True
        if reports and reports[0] == RECYCLE:
            with self._lock:
                child.recycling = True  # before its finish frees it: nothing more goes its way
            reports = reports[1:]
        for raw in reports:
            report = report_from_wire(raw)
            if isinstance(report, Started):
                self._started(child, report)
            else:
                self._finished(child, report)
        return True

    def _started(self, child: Child, report: Started) -> None:
        with self._lock:
            sent = self._sent.get(report.key)
            if sent is None or sent.state != QUEUED:
                return
            self._queued -= 1
            job = sent.job
            if sent.inbox_of is not None:
                sent.inbox_of.inbox_busy = False
            if not report.ran:
                del self._sent[report.key]
                self._free.append(report.key)
                if report.fenced and self._accepting and not sent.revoked:
                    job.epoch = RECHECK  # the broker decides, when a child is free (``_feed``)
                    self._waiting.appendleft(job)
                elif not sent.revoked:  # stopping: handed back with the rest by ``stop``
                    self._unstarted.append(job)
            else:
                sent.state = RUNNING
                child.job, child.slot = job, report.key
                hard = job.hard_limit
                child.deadline = report.at + hard if hard else None
                job.worker_pid = report.pid
            self._feed()  # a place in the queue came free: the next job goes in at once
        if not report.ran:
            if sent.revoked:
                _report(self.host.on_skipped, job)
            return
        _report(self.host.on_started, job, report.wall)
        if job.hard_limit:
            self._wake()  # the collector's poll timeout must cover the new deadline

    def _finished(self, child: Child, report: Finished) -> None:
        with self._lock:
            sent = self._sent.pop(report.key, None)
            if sent is None:
                return
            self._free.append(report.key)
            if child.job is sent.job:
                child.job, child.deadline = None, None
            self._feed()  # a child came free: an early-ack or large job may go in now
        _report(self.host.on_done, sent.job, report.outcome())

    def _reap(self, child: Child) -> None:
        self._drain_reports(child)  # a finish that made it into the pipe is not a loss
        # Its sentinel closes as it exits, a moment before its exit status can be read.
        child.process.join(REAP_WAIT)
        with self._lock:
            if child not in self._children:
                return
            self._children.remove(child)
            self._generation += 1
            lost = self._lost_with(child)
            code = child.process.exitcode
            if child.recycling and code == 0:
                self._rehome(lost)  # recycled: its replacement is forked below, nothing was lost
                lost = []
            elif code == 0 and not lost and self._retiring:
                self._retiring -= 1  # it took a retire token
            if self._accepting and self._size() < self._target:
                self._spawn()
        child.conn.close()
        if self._slots is not None:
            lost = self._settle_dead_child(child.pid, child.lane)
            if self._timed_out.pop(child.pid, None) is not None:
                for job in lost:
                    error = hard_exceeded(job.hard_limit or 0, job.name, job.id)  # Celery's line and error
                    _report(self.host.on_lost, job, "time_limit", error)
                lost = []
        if lost:  # Celery's worker line and error text, which users' alerts match
            status = _exit_status(code)
            log.error("Process %r pid:%d exited with %r", child.process.name, child.pid, status)
        for job in lost:
            reason = f"Worker exited prematurely: {status} Job: {next(self._lost_jobs)}."
            _report(self.host.on_lost, job, "worker_lost", WorkerLostError(reason))
        with self._lock:
            self._feed()

    def _children_now(self) -> list[Child]:
        with self._lock:
            return list(self._children)

    def _settle_dead_child(self, pid: int, lane: int) -> list[Job]:
        """What a dead work-sharing child held: the task it ran is lost (returned to settle as any
        lost task), a task it took but never started goes back to its queue, a finished one whose
        ack it had not sent yet is acked."""
        from engine.worker.sharing import rebuild_job

        assert self._slots is not None
        running: list[Job] = []
        taken: list[str] = []
        done: list[str] = []
        for held in self._slots.held():
            if held.pid != pid:
                continue
            if held.state == RUNNING_SLOT:
                job = rebuild_job(self.host, held.tag, kept=self._slots.running_message(lane))
                if job is not None:
                    job.worker_pid, job.time_start = pid, held.started or None
                    running.append(job)
            elif held.state == TAKEN_SLOT:
                taken.append(held.tag)
            elif held.state == DONE_SLOT:
                done.append(held.tag)
            self._slots.free(held.slot)
            self._slots.settled[LANES - 1] += 1
        self._slots.keep_running(lane, b"")  # its replacement starts with nothing kept
        broker, owner = self.host.broker, self.host.owner
        try:
            broker.requeue(owner, taken)
            broker.ack(owner, done)
        except Exception:  # the broker is away: they stay in the in-flight record, handed back at stop
            log.exception("could not settle what child %s held", pid)
        return running

    def _rehome(self, unstarted: list[Job]) -> None:
        """Orders a recycled child left in its inbox (sent as it decided to go) are still admitted
        jobs: they go to another child, or back with the rest when the pool stops. Called with
        the lock held."""
        if not self._accepting:
            self._unstarted.extend(unstarted)
            return
        for job in reversed(unstarted):
            self._rehomed.add(job.id)
            self._waiting.appendleft(job)

    def _drain_reports(self, child: Child) -> None:
        """Every report already in the pipe (an exiting child may have written several)."""
        with contextlib.suppress(OSError, EOFError, ValueError):
            while child.conn.poll(0) and self._receive(child):
                pass

    def _lost_with(self, child: Child) -> list[Job]:
        """The jobs a dead child held: the one it ran, and one it took but had not reported yet
        (``taken``). Called with the lock held, after ``_drain_reports``."""
        lost: list[Job] = []
        for slot, sent in list(self._sent.items()):
            if (sent.state == RUNNING and child.job is sent.job) or (
                sent.state == QUEUED and (self._shared.taken[slot] == child.pid or sent.inbox_of is child)
            ):
                del self._sent[slot]
                self._free.append(slot)
                if sent.state == QUEUED:
                    self._queued -= 1
                lost.append(sent.job)
        child.job, child.deadline = None, None
        return lost

    def _slot_deadlines(self) -> list[float]:
        """Hard deadlines of tasks running in work-sharing children (none for other children)."""
        if self._slots is None:
            return []
        return [h.deadline for h in self._slots.held() if h.state == RUNNING_SLOT and h.deadline]

    def _enforce_slot_deadlines(self, now: float) -> None:
        """A work-sharing child past its task's hard limit is killed; ``_reap`` settles the task
        as timed out (``_timed_out``) and the child is replaced."""
        assert self._slots is not None
        for held in self._slots.held():
            if held.state == RUNNING_SLOT and held.deadline and held.deadline <= now:
                self._timed_out[held.pid] = held.deadline
                _kill(held.pid, signal.SIGKILL)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        if self._slots is not None:
            self._enforce_slot_deadlines(now)
            return
        with self._lock:
            late = [c for c in self._children if c.deadline and c.deadline <= now and c.job]
        for child in late:
            self._drain_reports(child)  # it may have finished just now
            with self._lock:
                job = child.job
                if job is None or not child.deadline or child.deadline > now or child not in self._children:
                    continue
                self._children.remove(child)
                self._generation += 1
            _kill(child.pid, signal.SIGKILL)
            child.process.join(5)
            self._drain_reports(child)
            with self._lock:
                lost = self._lost_with(child)
                if self._accepting and self._size() < self._target:
                    self._spawn()
            child.conn.close()
            for other in lost:
                if other is job:
                    limit = job.hard_limit
                    error: BaseException = hard_exceeded(limit or 0, job.name, job.id)  # Celery's line and error
                    _report(self.host.on_lost, job, "time_limit", error)
                else:
                    error = WorkerLostError(f"child process {child.pid} was killed at its task's hard time limit")
                    _report(self.host.on_lost, other, "worker_lost", error)
            with self._lock:
                self._feed()

    # -- sizing -------------------------------------------------------------------------------
    def size(self) -> int:
        with self._lock:
            return self._size()

    def grow(self, n: int) -> int:
        with self._lock:
            for _ in range(max(n, 0)):
                self._spawn()
            self._target = self._size()
            self._feed()
        self._wake()
        return self._target

    def shrink(self, n: int) -> int:
        """Retire ``n`` children (never the last): each takes a retire token off the shared queue
        when it is next free, so a running task is never cut short."""
        with self._lock:
            n = min(max(n, 0), self._size() - 1)
            self._retiring += n
            self._target = self._size()
            idle_first = sorted(self._children, key=lambda c: c.job is not None)
            for i in range(n):
                self._send_retire(None if self._packets else idle_first[i])
        self._wake()
        return self._target

    def _send_retire(self, child: Child | None = None) -> None:
        """A retire token: through the shared queue (whichever child is next free), or to one child."""
        with contextlib.suppress(OSError, ValueError):
            if child is None:
                os.write(self._inq_w, _dumps(None))
            else:
                child.inbox.send_bytes(_dumps(None))

    def processes(self) -> list[int]:
        with self._lock:
            return [c.pid for c in self._children if c.process.is_alive()]

    def kill_job(self, task_id: str, signum: int) -> bool:
        if self._slots is not None:  # work-sharing: the running task's child (``Worker.terminate`` refreshed the books)
            job = self.host.active.get(task_id)
            if job is None or not job.worker_pid:
                return False
            _kill(job.worker_pid, signum)
            return True
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
        """Warm: jobs not started are handed back (the queued ones are skipped by the child that
        takes them); running ones finish, up to ``timeout``."""
        with self._lock:
            self._accepting = False
            self._shared.cancel[STOP] = 1
            left = self._take_unsent()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                busy = self._sent or (self.fetches_itself and self._children)
                if not busy or not any(c.process.is_alive() for c in self._children):
                    break
            time.sleep(STOP_POLL)
        return left + self._close(Deadline(CLOSE_WAIT, "stop"))

    def terminate(self, deadline: Deadline) -> list[Job]:
        """Cold: stop everything now; every queued and running job is handed back."""
        with self._lock:
            self._accepting = False
            self._shared.cancel[STOP] = 1
            left = self._take_unsent()
        return left + self._close(deadline)

    def _take_unsent(self) -> list[Job]:
        left = list(self._waiting)
        self._waiting.clear()
        if self._big is not None:
            left.append(self._big[1])
            self._big = None
        return left

    def _close(self, deadline: Deadline) -> list[Job]:
        """Stop the threads, then the children, every wait within ``deadline``; returns the jobs
        not finished. Once only: a warm stop's thread may still be on its way here when a cold
        stop comes; the later caller waits for the first and gets the same jobs (the worker hands
        each back once), so none depends on which of the two threads the worker heard from."""
        with self._closing:
            if self._closed is not None:
                return list(self._closed)
            self._closed = self._close_now(deadline)
            return list(self._closed)

    def _close_now(self, deadline: Deadline) -> list[Job]:
        """The close itself (``_close``: once)."""
        if self._feeder is not None:  # its blocking fetch ends within a second: nothing fetched after
            deadline.join(self._feeder.thread, "the fetch-ahead thread")
        self._stopped.set()
        self._wake()
        deadline.join(self._collector, "the prefork collector")
        with self._lock:
            children = list(self._children)
            self._children.clear()
            self._generation += 1
            unfinished = [s.job for s in self._sent.values()] + self._unstarted
            # Running a job, as the parent knows it or as the shared slots say (a ``Started``
            # the collector never read): killed at once, their jobs handed back from here.
            busy = {c.pid for c in children if c.job is not None} | {self._shared.taken[k] for k in self._sent}
            self._sent.clear()
            self._unstarted = []
            for child in children:
                self._send_retire(child)
        self._end_children(children, busy, deadline)
        if self._slots is not None:
            for child in children:  # what each held: running tasks back with the rest, finished ones acked
                unfinished += self._settle_dead_child(child.pid, child.lane)
        if self._turn is not None and (self._feeder is None or not self._feeder.thread.is_alive()):
            self._turn.close()  # the feeder and every child are gone (a feeder past its deadline keeps it)
        return unfinished

    def _end_children(self, children: list[Child], busy: set[int], deadline: Deadline) -> None:
        """Idle children take their retire token and exit; a work-sharing child is told to stop
        now (it hands back an early-acked task it runs, then exits). A child running a job the
        parent tracks (``busy``) is killed at once (the job is handed back from ``_sent``).
        Whatever is still there at the deadline is killed: a task that blocks signals, a child
        stuck in C."""
        for child in children:
            if child.pid in busy:
                _kill(child.pid, signal.SIGKILL)
            elif self.fetches_itself:
                _kill(child.pid, signal.SIGUSR1)
        alive = {c.process.sentinel: c for c in children}
        late = [alive[s] for s in deadline.wait_sentinels(alive)]
        if late:
            deadline.cut_short("child process(es) " + ", ".join(str(c.pid) for c in late), "killed")
        for child in late:
            _kill(child.pid, signal.SIGKILL)
        reaped = Deadline(KILLED_WAIT, deadline.what)
        for child in children:
            child.process.join(reaped.remaining())


def _can_share(host: PreforkHost) -> bool:
    """Work-sharing children (``tqctl_children_fetch``): on a broker whose in-flight record is the
    worker's (Redis), and only while nothing in this process must see each task go by: observers
    added to the worker, ``task_received`` receivers, events teed to local listeners
    (``--metrics-port``, ``--health-file``). A child's tasks never pass through the parent."""
    from engine.events.dispatcher import EventDispatcher
    from engine.worker.observers import TaskEvents, TaskHistory, TaskLog, TaskSignals

    if not host.app.conf.tqctl_children_fetch or not getattr(host.broker, "children_fetch", False):
        return False
    own = (TaskHistory, TaskEvents, TaskLog, TaskSignals)  # each child has its own; a user's stays here
    if any(type(observer) not in own for observer in host.observers):
        return False
    return not signals.task_received.receivers and type(host.events) is EventDispatcher


def _report(call: Callable[..., None], *args: Any) -> None:
    """Tell the worker about a job; its failure is logged, never allowed to end the collector."""
    try:
        call(*args)
    except Exception:
        log.exception("settling a job failed")


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def _exit_status(code: int | None) -> str:
    """As Celery's prefork worker words a child's exit: "signal 9 (SIGKILL)", "exitcode 1"."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {-code} ({signal.Signals(-code).name})"
        return f"signal {-code}"
    return f"exitcode {code}"
