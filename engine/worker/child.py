"""The prefork child's side: what it shares with the parent, and its loop.

A child takes an order off the shared in-queue (one reader at a time), records it has it
(``Shared.taken``), checks it may start it (not cancelled, not stopping, the owner's lease still
proves it ours), reports ``Started``, runs it and reports ``Finished``. See ``prefork`` for the
parent's side.
"""

from __future__ import annotations

import mmap
import os
import pickle
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from engine import signals, trace
from engine.protocol import task as protocol
from engine.request import Request
from engine.serialization import accepted_types
from engine.worker.limits import alarm_limits
from engine.worker.recycle import RECYCLE, Recycler
from engine.worker.trim import IDLE_BEFORE_TRIM, MALLOC_TRIM
from engine.worker.wire import NO_FENCE, Finished, RunOrder, Started, order_from_wire, request_of

if TYPE_CHECKING:
    from engine.worker.prefork import PreforkHost

PARENT_CHECK = 1.0  # seconds between a child's looks at whether its parent still lives
SLOTS = 4096  # jobs in the shared queue or running at once (slot 0 is the stop flag)
STOP = 0
PACKET = select.PIPE_BUF  # the largest order the shared queue carries (one atomic packet)
_loads = pickle.loads


def dumps(obj: Any) -> bytes:
    """Plain pickle both ways (multiprocessing's ``send`` builds a ForkingPickler per message)."""
    return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


class Shared:
    """Shared memory between the parent and its children (an anonymous shared mapping, inherited
    by fork): ``cancel[slot]`` (1: do not start it; slot 0 is the warm-stop flag),
    ``taken[slot]`` (the pid that took the job off the queue, written before anything else, so a
    child that dies before its ``Started`` arrives still accounts for its job), and the owner's
    lease (``[epoch, valid until]``, monotonic clock): a late-ack job waits in the queue, so the
    fence (``Maintenance.lease_holds``) is checked by the child as it starts it, not as it was
    queued; a frozen or cut-off parent stops renewing it."""

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, SLOTS * 8 + 16)
        view = memoryview(self._map)
        self.cancel = view[: SLOTS * 4].cast("i")
        self.taken = view[SLOTS * 4 : SLOTS * 8].cast("i")
        self.lease = view[SLOTS * 8 :].cast("d")

    @property
    def epoch(self) -> int:
        """The lease's epoch: it moves on when the parent learns the owner was reaped."""
        return int(self.lease[0])

    def set_lease(self, epoch: int, until: float) -> None:
        self.lease[0] = epoch  # first: a child that sees the new deadline sees the new epoch
        self.lease[1] = until

    def lease_holds(self, epoch: int) -> bool:
        if epoch == NO_FENCE:
            return True
        fresh = time.monotonic() < self.lease[1]
        return fresh and epoch == self.epoch


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


@dataclass(frozen=True)
class ChildEnds:
    """What a child is given at fork: the shared queue's read end (a non-blocking packet pipe),
    its own inbox (orders too large for a packet) and its own pipe back."""

    inq: int
    inbox: Connection
    out: Connection
    shared: Shared
    switch_interval: float  # the GIL's, as the process had it before the parent shortened its own


def child_main(ends: ChildEnds, host: PreforkHost, parent: int | None = None) -> None:
    """Loop in the child: take a job off the shared queue, report it, run it, report the outcome."""
    if parent is not None:
        _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.setswitchinterval(ends.switch_interval)
    signals.worker_process_init.send(sender=host.hostname)
    try:
        _serve_child(ends, host.app, host.hostname, Recycler(host.recycle))
    finally:
        signals.worker_process_shutdown.send(sender=host.hostname, pid=os.getpid(), exitcode=0)


def _serve_child(ends: ChildEnds, app: Any, hostname: str, recycler: Recycler) -> None:
    """Each write is a tuple of reports. After a run the child first tries to take the next job
    without waiting: if one is there, its ``Started`` rides in the same write as the ``Finished``
    (one wake-up of the parent per task under load instead of two). A child due for recycling
    takes nothing more: it says so, then reports its last outcome and exits."""
    pid = os.getpid()
    accepted = accepted_types(app.conf.accept_content)
    out = ends.out
    cancel, taken = ends.shared.cancel, ends.shared.taken
    ready = select.poll()
    ready.register(ends.inq, select.POLLIN)
    ready.register(ends.inbox.fileno(), select.POLLIN)
    finished: Finished | None = None
    while True:
        data = _take(ends.inq) if finished is not None else None
        if data is None:
            if finished is not None:
                out.send_bytes(dumps((tuple(finished),)))
                finished = None
            data = _wait_for_order(ends, ready)
            if data is None:
                return  # the parent is gone
        raw = _loads(data)
        if raw is None:
            return  # retired (the pool shrank, or stops)
        order: RunOrder = order_from_wire(raw)
        slot = order.key
        taken[slot] = pid
        fenced = not ends.shared.lease_holds(order.epoch)
        ran = not (cancel[STOP] or cancel[slot] or fenced)
        started = Started(key=slot, pid=pid, at=time.monotonic(), wall=time.time(), ran=ran, fenced=fenced)
        out.send_bytes(dumps((tuple(started),) if finished is None else (tuple(finished), tuple(started))))
        finished = None
        if not ran:
            continue
        try:
            with alarm_limits(order.soft_limit, None):
                o = trace.run(app, app.tasks[order.name], _request(order, hostname, accepted))
        except Exception as exc:  # outside trace's own net (the limits, the request): still an outcome
            o = trace.internal_error(exc)
        # Results stay in the backend; only the summary crosses the pipe.
        finished = Finished.of(slot, o)
        if recycler.active and recycler.after_task():
            out.send_bytes(dumps((RECYCLE, tuple(finished))))  # one write: read whole, in order
            return


def _request(order: RunOrder, hostname: str, accepted: frozenset[str]) -> Request:
    """The order's request: built here from the message's bytes (the parent decoded and checked
    them already, so this decode cannot refuse them), or sent ready-made."""
    if isinstance(order.request, bytes):
        message = protocol.decode_again(order.request, accepted)
        return request_of(message, hostname, order.ignore_result, order.hard_limit, order.soft_limit).build()
    return Request(*order.request)


def _take(inq: int) -> bytes | None:
    """One order off the shared queue if one is there; never blocks. The queue is a packet pipe
    (``O_DIRECT``): a read returns one whole order, so children need no lock to share it (a lock
    held by a child killed while it waited would stop every other child for good)."""
    try:
        return os.read(inq, PACKET) or None
    except BlockingIOError:
        return None


def _wait_for_order(
    ends: ChildEnds,
    ready: select.poll,
    trim: Callable[[int], int] | None = MALLOC_TRIM,
    idle: float = IDLE_BEFORE_TRIM,
) -> bytes | None:
    """Block until an order is ours: from the shared queue (another child may take it first: poll
    again) or, for one too large for a packet, from this child's own inbox. A child left idle for
    a while gives its freed heap back first (``engine.worker.trim``)."""
    inbox = ends.inbox.fileno()
    idle_ms: int | None = int(idle * 1000) if trim is not None else None
    while True:
        events = dict(ready.poll(idle_ms))
        if not events:  # idle that long (only a timed poll returns none): once per wait
            idle_ms = None
            if trim is not None:
                trim(0)
            continue
        if inbox in events:
            try:
                return ends.inbox.recv_bytes()
            except (EOFError, OSError):
                return None
        if ends.inq in events:
            if events[ends.inq] & select.POLLIN:
                data = _take(ends.inq)
                if data is not None:
                    return data
            elif events[ends.inq] & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                return None
