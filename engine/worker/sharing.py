"""Work-sharing prefork children (Redis): each child fetches for itself and shares its batch.

A child takes the next message off the shared in-queue; when the in-queue is empty it fetches a
batch from Redis into the worker's own in-flight record, keeps the first message and puts the
rest into the in-queue for whichever child is free first. So fetches stay batched (one round
trip for several messages) without a batch waiting behind one child's long task, and the parent
is out of the per-task path: each child sorts, runs, settles and observes what it takes, as a
solo worker does. The parent keeps the owner's heartbeat (its lease reaches the children through
shared memory), remote control and the pool's supervision: crash accounting and hard limits
through the shared slot table (``slots``), revokes and remote changes through each child's inbox.
A child has one thread for its work (``serve``: fetch, sort, run, settle) beside two small ones:
upkeep (acks, events, history, the stop flag) and orders (the parent's messages).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import pickle
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from engine import signals
from engine.broker.base import Delivery
from engine.protocol import task as protocol
from engine.worker.child import PACKET, STOP, ChildEnds, Shared, _die_with_parent, _take
from engine.worker.child import dumps as _dumps
from engine.worker.observers import Observer
from engine.worker.recycle import RECYCLE, RecycleLimits, RecycleObserver, Recycler
from engine.worker.slots import DONE, RUNNING, SHARED, TAKEN, Slots
from engine.worker.trim import IdleTrim
from engine.worker.turn import FetchTurn

if TYPE_CHECKING:
    from engine.broker.base import DeadLetter
    from engine.broker.redis import RedisBroker
    from engine.trace import Outcome
    from engine.worker.deadline import Deadline
    from engine.worker.job import Job
    from engine.worker.worker import Worker

log = logging.getLogger("engine.worker")
COLD = signal.SIGUSR1  # from the parent: stop now, handing back an early-acked running task
UPKEEP = 0.1  # seconds between a child's flushes of acks, events and history
STOP_LOOK = 0.25  # seconds an idle child waits on the in-queue between looks at the stop flag
DRY_SKIP = 0.05  # seconds after an empty fetch during which a child about to wait does not fetch again
TURN_POLL = 0.001  # seconds a child first waits on the in-queue for the Feeder's fetch (doubling)
# Task events a child buffers before it publishes them (besides each upkeep tick): about 33 tasks'
# worth, and the history records written just before them. The buffers' peak stays with the
# allocator after a flush: 2,000 (the worker's) cost each child about a megabyte more, measured as
# the tree's PSS after a benchmark run, and 200 about 0.3 MB more than 100 (tree 52.1 against 51.5
# MB after two 20,000-task drains at -c 2). 100 events make a message of about 35 KB.
EVENT_BATCH = 100
ACK_BATCH = 32  # acks a child holds before it sends them without waiting for its next fetch


def share(inq_w: int, held: Sequence[tuple[int, Delivery]], epoch: int) -> None:
    """Fetched messages into the shared in-queue, each one packet, for whichever child is free.
    ``epoch``: the owner's lease epoch read before the fetch; a packet still queued when a reap
    is noticed (a frozen parent) is checked with the broker before it runs (``SharedFetch``)."""
    packets = []
    for slot, d in held:
        packet = _dumps((slot, d.tag, d.queue_key, d.raw, epoch))
        if len(packet) > PACKET:  # too large for one packet: the taker reads it from the in-flight record
            packet = _dumps((slot, d.tag, d.queue_key, None, epoch))
        packets.append(packet)
    data = memoryview(b"".join(p.ljust(PACKET, b"\0") for p in packets))
    while data:
        data = data[os.write(inq_w, data) :]


class Reports:
    """A child's report pipe to the parent, written from several of its threads (one at a time)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, report: Any) -> None:
        data = _dumps(report)
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._conn.send_bytes(data)


class SharedLease:
    """The parent's lease as a child reads it (the parent heartbeats; ``Shared.set_lease``)."""

    def __init__(self, shared: Shared, out: Reports) -> None:
        self.shared = shared
        self.out = out  # a message parked until later is the parent's to promote

    @property
    def epoch(self) -> int:
        return self.shared.epoch

    def lease_holds(self, epoch: int) -> bool:
        return self.shared.lease_holds(epoch)

    def expect_due(self, when: float) -> None:
        """The parent's upkeep promotes due messages: it is told when the next one is due."""
        self.out.send(("due", when))

    def stop(self, deadline: Deadline | None = None) -> None:
        pass  # the parent's upkeep is the worker's: nothing runs here


class SharedFetch:
    """A child's broker: ``fetch`` serves the shared in-queue first and fetches a batch only when
    it is empty; every settlement frees the message's slot once the broker has it. Everything
    else is the Redis broker's own."""

    def __init__(
        self,
        broker: RedisBroker,
        inq_r: int,
        inq_w: int,
        batch: int,
        slots: Slots,
        lane: int,
        shared: Shared,
        turn: FetchTurn,
    ) -> None:
        self._broker = broker
        self._turn = turn
        self._shared = shared  # the owner's lease: its epoch is what a shared packet is checked against
        self._inq_r, self._inq_w = inq_r, inq_w
        self._batch = max(1, batch)
        self._acks: list[str] = []
        self._forsaken: list[str] = []  # given up while sorting: their slots free at the next reconcile
        self._lock = threading.Lock()
        self.slots, self.lane, self.pid = slots, lane, os.getpid()
        self.slot_of: dict[str, int] = {}
        self.stopping: Any = lambda: False  # set by the child: the parent's stop flag
        self.retired = False  # took a retire token off the shared in-queue
        # The queues this child fetches from, the parent's (remote commands change them). Empty
        # (drain, every consumer cancelled): no fetch from Redis, but what the in-queue holds runs.
        self.queues: list[str] | None = None
        self._dry_until = 0.0  # a fetch came back empty: until then, an idle wait skips fetching again
        self.taken: dict[str, bytes] = {}  # each message taken here, pickled (queue key, bytes): kept at an early ack
        self._ready = select.poll()
        self._ready.register(inq_r, select.POLLIN)
        broker.tag_base = f"p{self.pid}-"  # fetch tags unique across the children of one owner

    def __getattr__(self, name: str) -> Any:
        """What a worker calls that holds no slot (``hand_back`` at a cold stop, then the process
        exits and the parent settles its lane): the Redis broker's own."""
        return getattr(self._broker, name)

    def forsake(self, tags: Sequence[str]) -> None:
        """Messages this child fetched but will not run (a broker error while sorting them): the
        next ``reconcile`` hands them back, and only then are their slots free."""
        self._broker.forsake(tags)
        with self._lock:
            self._forsaken.extend(tags)

    def reconcile(self, owner: str) -> int:
        with self._lock:
            forsaken, self._forsaken = self._forsaken, []
        try:
            moved = self._broker.reconcile(owner)
        except BaseException:
            with self._lock:
                self._forsaken[:0] = forsaken
            raise
        self._freed(forsaken)  # back in their queues: no longer the worker's (``Slots.holding``)
        return moved

    def fetch(
        self, owner: str, queues: Sequence[str], limit: int, timeout: float, acks: Sequence[str] = ()
    ) -> list[Delivery]:
        with self._lock:
            self._acks.extend(acks)
        if self.stopping() or self.retired:
            return []  # the worker stops: nothing more starts here (what is shared is handed back)
        data = _take(self._inq_r)
        if data is not None:
            return self._taken(owner, data)
        if self.queues is not None:
            queues = self.queues
        free = self.slots.allocate(self.lane, self._batch) if queues else []
        # Nothing to fetch from, or every slot of ours still out with the others; or about to wait,
        # when a fetch of ours just came back empty (what arrives now is the parent's ``Feeder``'s).
        if not free or (timeout > 0 and time.monotonic() < self._dry_until):
            self.ack(owner, [])
            return self._wait_for_shared(owner, timeout)
        if self._turn.try_child():
            return self._fetch_in_turn(owner, queues, free, timeout)
        # The Feeder is fetching (``FetchTurn``): a fetch of ours could start a later message before
        # its earlier ones reach the in-queue. Right after a task (``timeout`` 0) its turn is not
        # waited for: its fetch may block on an empty queue while this child's results wait to go out.
        if timeout <= 0:
            return []
        self.ack(owner, [])  # about to wait: the acks held here go now rather than wait with us
        return self._wait_for_shared(owner, timeout, lambda: self._fetch_in_turn(owner, queues, free, timeout))

    def _fetch_in_turn(self, owner: str, queues: Sequence[str], free: list[int], timeout: float) -> list[Delivery]:
        """The turn is ours until this gives it up: what the Feeder shared just before it gave the
        turn up was fetched earlier than anything we would fetch, so it goes first."""
        try:
            data = _take(self._inq_r)
            got = self._fetch_batch(owner, queues, free) if data is None else []
        finally:
            self._turn.give()
        if data is not None:
            return self._taken(owner, data)
        if not got:
            self._dry_until = time.monotonic() + DRY_SKIP
            return self._wait_for_shared(owner, timeout)
        return got

    def _fetch_batch(self, owner: str, queues: Sequence[str], free: list[int]) -> list[Delivery]:
        """A batch from Redis (the turn held): the first message is this child's, the rest go into
        the in-queue before the turn is given up."""
        with self._lock:
            pending, self._acks = self._acks, []
        epoch = self._shared.epoch  # before the fetch: a reap noticed later makes it stale
        try:
            # Never blocking on Redis: an idle worker's one blocking fetch is the parent's (``Feeder``),
            # so what arrives while every child is idle reaches them in order, through the in-queue.
            got = self._broker.fetch(owner, queues, len(free), 0, pending)
        except BaseException:
            with self._lock:
                self._acks[:0] = pending
            raise
        self._freed(pending)
        if not got:
            return got
        self.slots.brought[self.lane] += len(got)
        for slot, d in zip(free, got, strict=False):
            self.slots.hold(slot, d.tag, SHARED, 0)
        self.slots.mark(free[0], TAKEN, self.pid)
        self.slot_of[got[0].tag] = free[0]
        self.taken[got[0].tag] = _dumps((got[0].queue_key, got[0].raw))
        if len(got) > 1:
            share(self._inq_w, list(zip(free[1:], got[1:], strict=False)), epoch)
        return got[:1]

    def _taken(self, owner: str, data: bytes) -> list[Delivery]:
        """A packet off the shared in-queue: the message it names, now this child's."""
        if len(self._acks) >= ACK_BATCH:
            self.ack(owner, [])
        order = pickle.loads(data)
        if order is None:  # a retire token (the pool shrinks): this child stops
            self.retired = True
            return []
        slot, tag, key, raw, epoch = order
        # Shared by reference (too large for a packet), or fetched before the worker learnt it
        # had been reaped (the parent was frozen or cut off): the broker says whether it is ours.
        # Run on the current epoch's word alone, a reaped one would run here and where it went back.
        if raw is None or epoch != self._shared.epoch:
            held = self._broker.held(owner, tag)
            if held is None:  # taken back while the worker looked dead: not ours to run
                self.slots.free(slot)
                self.slots.settled[self.lane] += 1
                return []
            raw = held.raw
        self.slots.mark(slot, TAKEN, self.pid)
        self.slot_of[tag] = slot
        self.taken[tag] = _dumps((key, raw))
        return [Delivery(tag, key, raw)]

    def _wait_for_shared(
        self, owner: str, timeout: float, on_turn: Callable[[], list[Delivery]] | None = None
    ) -> list[Delivery]:
        """Nothing to fetch now: wait up to ``timeout`` for the in-queue (the parent's blocking
        fetch fills it). Every idle child's poll wakes for each packet; those that lose it wait
        again rather than each make a round trip to Redis. The parent's stop flag is looked at
        every ``STOP_LOOK`` seconds. With ``on_turn`` (the Feeder holds the fetch turn), the turn
        is tried between looks, and ``on_turn`` fetches once it is ours; the first look comes
        after ``TURN_POLL`` and each wait doubles, so a fetch of the Feeder's that found messages
        (a round trip) holds this child up little, one blocked on an empty queue wakes it seldom."""
        end = time.monotonic() + timeout
        pause = STOP_LOOK if on_turn is None else TURN_POLL
        while (left := end - time.monotonic()) > 0 and not self.stopping():
            if self._ready.poll(min(left, pause) * 1000) and (data := _take(self._inq_r)) is not None:
                return self._taken(owner, data)
            if on_turn is not None and self._turn.try_child():
                return on_turn()
            pause = min(pause * 2, STOP_LOOK)
        return []

    def pending_acks(self) -> list[str]:
        with self._lock:
            return list(self._acks)

    def _freed(self, tags: Sequence[str]) -> None:
        for tag in tags:
            self.taken.pop(tag, None)
            slot = self.slot_of.pop(tag, None)
            if slot is not None:
                self.slots.free(slot)
                self.slots.settled[self.lane] += 1

    # -- settlement: the broker has it, so the slot is free ------------------------------------
    def ack(self, owner: str, tags: Sequence[str]) -> None:
        """The acks held here (they ride on the next fetch when one comes) and ``tags``. On a broker
        error the held ones are held again (the caller keeps ``tags``: ``Settlement.flush_acks``
        puts them back); before, they were dropped: their finished messages stayed in the in-flight
        record (handed back, so run again, when the worker stopped) and their slots stayed taken
        (the prefetch window shrank for good)."""
        with self._lock:
            own, self._acks = self._acks, []
        pending = own + list(tags)
        if not pending:
            return
        try:
            self._broker.ack(owner, pending)
        except BaseException:
            with self._lock:
                self._acks[:0] = own
            raise
        self._freed(pending)

    def claim(self, owner: str, tag: str, take: bool, acks: Sequence[str] = (), fresh: float | None = None) -> bool:
        """An early ack takes the in-flight record: the message is kept in this child's lane
        first, so a parent settling this child's death still has it. ``LeaseLapsed`` passes
        through with the slot still held: the message is still ours until the fence says not."""
        held = self.taken.get(tag)
        if take and held is not None:
            self.slots.keep_running(self.lane, held)
        ours = self._broker.claim(owner, tag, take, acks, fresh)
        self._freed(acks)
        if not ours:
            self._freed([tag])
        return ours

    def requeue(self, owner: str, tags: Sequence[str]) -> int:
        moved = self._broker.requeue(owner, tags)
        self._freed(tags)
        return moved

    def defer(self, owner: str, tag: str, eta: float) -> None:
        self._broker.defer(owner, tag, eta)
        self._freed([tag])

    def dead_letter(self, owner: str | None, tag: str | None, letter: DeadLetter) -> None:
        self._broker.dead_letter(owner, tag, letter)
        if tag:
            self._freed([tag])


class SlotStates(Observer):
    """Marks a child's slot RUNNING (with its hard deadline) and DONE, for the parent's crash
    accounting; settlement frees it (``SharedFetch``). Keeps the running job for a cold stop."""

    def __init__(self, fetch: SharedFetch) -> None:
        self.fetch = fetch
        self.running: Job | None = None

    def started(self, job: Job) -> None:
        self.running = job
        slot = self.fetch.slot_of.get(job.delivery.tag)
        if slot is not None:
            deadline = time.monotonic() + job.hard_limit if job.hard_limit else 0.0
            self.fetch.slots.mark(slot, RUNNING, self.fetch.pid, deadline, job.time_start or time.time())

    def finished(self, job: Job, outcome: Outcome) -> None:
        self.running = None
        tag = job.delivery.tag
        slot = self.fetch.slot_of.get(tag)
        if slot is None or self.fetch.slots.state[slot] != RUNNING:
            return
        if job.acked and tag not in self.fetch.pending_acks():  # early-acked: nothing left to send
            self.fetch.slots.keep_running(self.fetch.lane, b"")
            self.fetch._freed([tag])
        elif outcome.held:  # its result not written yet: if this child dies, it runs again
            self.fetch.slots.mark(slot, TAKEN, self.fetch.pid)
        else:
            self.fetch.slots.mark(slot, DONE, self.fetch.pid)


def fetch_batch(window: int, concurrency: int) -> int:
    """How many messages a child fetches when it finds the in-queue empty: what the prefetch window
    has room for while every other child runs one task. So a batch never takes the worker past
    Celery's window, and each round trip to Redis (about as costly as a no-op task, a syscall pair
    and two wake-ups) brings as many as it may: at ``-c 2``, 7 where it brought 4."""
    return max(1, window - concurrency + 1)


def sharing_child_main(
    ends: ChildEnds,
    inq_w: int,
    slots: Slots,
    lane: int,
    parent: Worker,
    parent_pid: int,
    own: RedisBroker,
    turn: FetchTurn,
) -> None:
    """A child: a solo worker whose fetches go through ``SharedFetch`` under the parent's owner.
    ``own`` is its broker, built by the parent just before the fork and never used there (the
    parent's own object may be forked mid-fetch, its lock held): built before the fork, its pages
    stay shared, and the child starts without building a Redis client (about 0.2 MB of the tree)."""
    from engine.worker.worker import Worker

    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.setswitchinterval(ends.switch_interval)
    batch = fetch_batch(parent.prefetch, parent.concurrency)
    broker = SharedFetch(own, ends.inq, inq_w, batch, slots, lane, ends.shared, turn)
    w = Worker(
        parent.app,
        pool="solo",
        queues=parent.queues,
        hostname=parent.hostname,
        prefetch_multiplier=1,
        broker=broker,
        owner=parent.owner,
    )
    reports = Reports(ends.out)
    w.maintenance = SharedLease(ends.shared, reports)  # type: ignore[assignment]
    w.pool.hard_limits = False  # type: ignore[attr-defined]  # the parent kills this child at a hard limit
    w.consumer.rate_share = max(1, parent.concurrency)  # rate limits are the worker's: each child runs its share
    _hold_results(w)
    w.events.batch = EVENT_BATCH
    states = SlotStates(broker)
    w.observers.add(states)
    signal.signal(COLD, lambda signum, frame: _cold(w, broker, states))
    broker.stopping = lambda: bool(ends.shared.cancel[STOP])
    _recycle_when_due(w, broker, reports, parent.recycle)
    w.revoked.update(list(parent.revoked))
    sent: dict[str, int] = {}  # tasks processed, as reported to the parent so far
    upkeep = threading.Thread(target=_upkeep, args=(w, broker, ends.shared, reports, sent), name="upkeep", daemon=True)
    threading.Thread(target=_orders, args=(w, broker, ends), name="orders", daemon=True).start()
    w.pool.start()  # a solo pool's worker_process_init: this child is a pool process
    upkeep.start()
    try:
        serve(w)
    finally:
        _stop(w, broker)
        upkeep.join(UPKEEP * 10)  # its last tick done: the counts below are the last word
        _report_processed(w, reports, sent)  # what ran since the last tick still counts (stats)
        signals.worker_process_shutdown.send(sender=w.hostname, pid=os.getpid(), exitcode=0)


def _recycle_when_due(w: Worker, broker: SharedFetch, reports: Reports, limits: RecycleLimits) -> None:
    """With a limit set, the task that reaches it is this child's last: it takes nothing more off
    the in-queue (what it shared stays there for the others), tells the parent it exits on
    purpose, and stops as at a warm stop (``_stop``: held results, acks and events go out)."""
    if not limits:
        return

    def retire() -> None:
        broker.retired = True
        reports.send((RECYCLE,))
        w.request_stop()

    w.observers.add(RecycleObserver(Recycler(limits), retire))


def _hold_results(w: Worker) -> None:
    """This child's plain successes are written behind (``engine.backend.held``), on a Redis
    result store it writes to itself: before their acks, before the events that announce them,
    and before the child waits for work."""
    from engine.backend.held import HeldResults
    from engine.backend.redis import RedisBackend

    backend = w.app.backend
    if not isinstance(backend, RedisBackend) or backend.uses_pool():
        return
    held = HeldResults(backend, float(w.app.conf.tqctl_result_retry_timeout))
    backend.held = w.settlement.held = held
    history = w.history.flush

    def before_events() -> None:
        w.settlement.release_held()
        history()

    w.events.before_publish = before_events


def serve(w: Worker) -> None:
    """The child's one thread fetches, sorts and runs: no consumer thread hands it each job. A
    finished task's ``top_up`` takes the next one at once; while none is there the child waits on
    the shared in-queue (``SharedFetch._wait_for_shared``) inside the consumer's ``step``."""
    pool = w.pool
    while not w.stopping.is_set():
        ran = pool.run_next(0)  # type: ignore[attr-defined]  # a solo pool's
        if ran is None:
            return
        if not ran:
            _flush_before_waiting(w)
            w.consumer.step()


def _flush_before_waiting(w: Worker) -> None:
    """About to wait for work: what this child holds goes out now rather than at its next upkeep
    tick, whose round trips came in the way of the next task now and then (publish to start at
    200 tasks/s, alternating runs: p99 median 2.1 ms against 2.7); done here, they fall in the
    idle gap. Under load a child seldom gets here. A broker error leaves them to upkeep."""
    try:
        _send_held(w)
    except Exception as exc:
        log.debug("flushing before waiting for work failed (upkeep tries again): %r", exc)


def _send_held(w: Worker) -> None:
    """What the child holds, in the order its promises need: results written behind, then acks
    (a job is acked only once its result is stored), then history and events (``before_publish``
    writes the history first, so whoever hears an event can read the record)."""
    w.settlement.release_held()
    w.settlement.flush_acks()
    w.broker.ack(w.owner, [])
    w.events.flush()
    w.history.flush()


def _report_processed(w: Worker, out: Any, sent: dict[str, int]) -> None:
    """The tasks this child processed since its last report, by name, to the parent (its books:
    ``inspect stats``, the heartbeat's count)."""
    delta = {name: n - sent.get(name, 0) for name, n in list(w.processed.items()) if n != sent.get(name, 0)}
    if delta:
        out.send(delta)
        sent.update({name: sent.get(name, 0) + n for name, n in delta.items()})


def _upkeep(w: Worker, broker: SharedFetch, shared: Shared, ends_out: Any, sent: dict[str, int]) -> None:
    """Acks, events and history go out each tick; the parent's stop flag stops the child; an
    idle child gives its freed heap back (``engine.worker.trim``)."""
    trim = IdleTrim()
    while not w.stopping.wait(UPKEEP):
        if shared.cancel[STOP] or broker.retired:
            w.request_stop()
        trim.tick(sum(sent.values()))  # tasks reported so far; no broker needed, so before its calls
        try:
            _report_processed(w, ends_out, sent)
            # A fetch of this child's whose reply was lost may have run anyway: its own broker
            # object remembers it (the parent's reconcile knows only the parent's fetches).
            if broker.reconcile(w.owner):
                log.warning("handed back message(s) a failed fetch had moved into the in-flight record")
            if w.settlement.pending:
                w.settlement.retry_pending()
            _send_held(w)
        except Exception:  # the broker blinked: the next tick tries again
            continue


def _orders(w: Worker, broker: SharedFetch, ends: ChildEnds) -> None:
    """The parent's orders on this child's inbox: revokes (each child sorts what it takes)."""
    while True:
        try:
            order = pickle.loads(ends.inbox.recv_bytes())
        except (EOFError, OSError):
            return  # the parent is gone
        if isinstance(order, tuple) and order[0] == "revoke":
            w.revoked.update(order[1])
        elif isinstance(order, tuple) and order[0] == "state":
            _apply_state(w, broker, order[1])


def _apply_state(w: Worker, broker: SharedFetch, state: dict[str, Any]) -> None:
    """What a remote command changed in the parent, applied here (the queues to the fetch only:
    the consumer keeps taking what the in-queue holds)."""
    broker.queues = list(state["queues"])
    for header, values in state["stamps"].items():
        w.revoked.stamps.add({header: list(values)})
    tasks = w.app.tasks
    for name, rate in state["rates"].items():
        if name in tasks and tasks[name].rate_limit != rate:
            tasks[name].rate_limit = rate
            w.consumer.set_rate_limit(name, rate)
    for name, task in tasks.items():
        if task.rate_limit and name not in state["rates"]:
            task.rate_limit = None
            w.consumer.set_rate_limit(name, None)
    for name, (hard, soft) in state["limits"].items():
        if name in tasks:
            tasks[name].time_limit, tasks[name].soft_time_limit = hard, soft
    w.events.enabled = bool(state["events"])


def _cold(w: Worker, broker: SharedFetch, states: SlotStates) -> None:
    """The parent's cold stop reached this child mid-task: an early-acked task (no longer in the
    in-flight record, which the parent hands back) goes back to its queue from here; then exit."""
    job = states.running
    try:
        if job is not None and job.acked:
            broker.hand_back([(job.delivery.queue_key, job.delivery.raw)])
            broker.slots.keep_running(broker.lane, b"")  # handed back: the parent must not do it again
        broker.ack(w.owner, [])
    finally:
        os._exit(0)


def _stop(w: Worker, broker: SharedFetch) -> None:
    """Warm: the running task has finished; what this child holds but never started goes back to
    its queue (not ``requeue_all``: the in-flight record is shared with the other children)."""
    w.stopping.set()
    unstarted = w.consumer.take_held() + w.pool.stop(0)
    tags = [job.delivery.tag for job in unstarted]
    if tags:
        broker.requeue(w.owner, tags)
    _send_held(w)


def rebuild_job(host: Any, tag: str, book: bool = True, kept: bytes | None = None) -> Job | None:
    """The job a dead child ran, from the in-flight record (the parent never saw its message), or
    from what its child ``kept`` when an early ack took that record."""
    from engine.serialization import accepted_types

    delivery = host.broker.held(host.owner, tag)
    early = delivery is None and kept is not None
    if early:
        key, raw = pickle.loads(kept)  # type: ignore[arg-type]
        delivery = Delivery(tag, key, raw)
    if delivery is None:
        return None  # settled after all, or taken back while the worker looked dead
    message = protocol.decode(delivery.raw, accepted_types(host.app.conf.accept_content))
    task = host.app.tasks.get(message.name)
    if task is None:
        return None
    job: Job = host.make_job(delivery, message, task)
    job.acked = early  # early-acked: a failure is stored, nothing is requeued
    if book:
        host.active[job.id] = job  # lost with its child: settled as an active job is
    return job


class FetchResult(enum.Enum):
    """One pass of the Feeder's: after a short fetch it fetches what arrives as it arrives, as
    Celery's; after a full one it waits until most of the window is free, for a larger batch."""

    FULL = enum.auto()  # as many came as it asked for
    DRY = enum.auto()  # fewer came: the queues are drained for now
    NO_TURN = enum.auto()  # a child is fetching (``FetchTurn``): its batch comes first


class Feeder:
    """The parent's part: while every child is busy and the prefetch window has room, fetch
    ahead into the shared in-queue (the raw messages only; the children sort them), so the
    worker reserves what Celery's would and a child that finishes finds its next task waiting."""

    POLL = 0.002  # seconds between looks at the window while it is full

    def __init__(self, worker: Worker, slots: Slots, lane: int, inq_w: int, turn: FetchTurn) -> None:
        self.worker, self.slots, self.lane, self.inq_w = worker, slots, lane, inq_w
        self.turn = turn
        self.thread = threading.Thread(target=self.run, name="feeder", daemon=True)

    def run(self) -> None:
        """The thread's body: an error in one pass is logged and the next pass starts afresh (its
        fetched messages are given up to the next reconcile, which hands them back)."""
        w = self.worker
        while not w.stopping.is_set():
            try:
                self._loop()
            except Exception:
                log.exception("the fetch-ahead thread failed; carrying on")
                w.stopping.wait(0.5)

    def _loop(self) -> None:
        w = self.worker
        dry = True  # the last fetch came back short: fetch what arrives as it arrives, as Celery's
        while not w.stopping.is_set():
            room = w.prefetch - self.slots.holding()
            if room < (1 if dry else max(1, w.prefetch * 3 // 4)) or not w.queues:
                w.stopping.wait(self.POLL)
                continue
            try:
                fetched = self._fetch(room)
            except Exception as exc:  # the broker blinked: try again shortly
                log.warning("fetch ahead failed: %s", exc)
                w.stopping.wait(0.5)
                continue
            if fetched is FetchResult.NO_TURN:
                w.stopping.wait(self.POLL)
                continue
            dry = fetched is FetchResult.DRY

    def _fetch(self, room: int) -> FetchResult:
        """Fetch up to ``room`` into the in-queue, holding the turn: a child fetching meanwhile could
        start a later message before these reach the in-queue (``engine.worker.turn``)."""
        if not self.turn.try_feeder():
            return FetchResult.NO_TURN
        try:
            w = self.worker
            free = self.slots.allocate(self.lane, room)
            epoch = w.maintenance.epoch  # before the fetch (``share``)
            got = w.broker.fetch(w.owner, w.queues, len(free), 1.0, ())
            result = FetchResult.DRY if len(got) < len(free) else FetchResult.FULL
            try:
                got = [d for d in got if not self._parked(d)]
                self.slots.brought[self.lane] += len(got)
                for slot, d in zip(free, got, strict=False):
                    self.slots.hold(slot, d.tag, SHARED, 0)
                share(self.inq_w, list(zip(free, got, strict=False)), epoch)
            except BaseException:
                w.broker.forsake([d.tag for d in got])
                raise
            return result
        finally:
            self.turn.give()

    def _parked(self, delivery: Delivery) -> bool:
        """A message with a future ETA goes to the broker's delayed set at once, as the parent's
        consumer did, rather than wait in the in-queue holding a place (and out of ``inspect
        scheduled``) until a child is free. Only messages whose headers name an ETA are decoded."""
        raw = delivery.raw
        if not protocol.may_name_eta(raw):
            return False
        from engine.worker.consumer import ETA_SLACK

        w = self.worker
        try:
            message = protocol.decode(raw, w.consumer.accepted, w.consumer.max_bytes)
        except protocol.MalformedMessage:
            return False  # the child that takes it dead-letters it
        eta = message.eta
        if eta is None or eta.timestamp() <= time.time() + ETA_SLACK:
            return False
        w.broker.defer(w.owner, delivery.tag, eta.timestamp())
        w.on_deferred(message)
        return True
