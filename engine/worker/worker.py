"""``Worker``: starts its parts in order, keeps the books, and shuts down cleanly.

Start order: broker check → owner heartbeat → pool → maintenance → consumer. Stop runs in
reverse, and whatever was fetched but not finished goes back to its queue.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine import signals
from engine.broker.connect import worker_fanout
from engine.config import mask_url
from engine.control import load_revoked
from engine.events.dispatcher import EventDispatcher
from engine.exceptions import ImproperlyConfigured
from engine.history import HistoryWriter
from engine.protocol.events import worker_fields
from engine.worker.autoscale import Autoscaler
from engine.worker.capacity import Capacity
from engine.worker.consumer import Consumer
from engine.worker.deadline import COLD_STOP, Deadline
from engine.worker.job import Job
from engine.worker.maintenance import Maintenance
from engine.worker.observers import Observers, TaskEvents, TaskHistory, TaskLog, TaskSignals
from engine.worker.pool import Pool, SoloPool, ThreadPool
from engine.worker.prefork import PreforkPool
from engine.worker.recycle import RecycleLimits
from engine.worker.remote import RemoteControl
from engine.worker.revoked import RevokedSet
from engine.worker.settlement import Settlement

if TYPE_CHECKING:
    from engine.app import App
    from engine.broker.base import Delivery
    from engine.protocol.task import TaskMessage
    from engine.task import Task
    from engine.trace import Outcome

log = logging.getLogger("engine.worker")
HEARTBEAT_FREQ = 2.0  # seconds between worker-heartbeat events (Celery's default)
ON_DEMAND_HEARTBEAT_FREQ = 5  # the fixed ``freq`` Celery's ``heartbeat`` control command sends
# Task events wait for the upkeep tick, which stores their history records first, unless this
# many pile up in between: then the thread that adds the last one writes and publishes them.
HELD_EVENTS = 2000
DRAIN_POLL = 0.05  # seconds between looks at whether a draining worker has finished its jobs


def _asyncio_pool() -> type[Pool]:
    from engine.worker.pool_asyncio import AsyncioPool

    return AsyncioPool


def _gevent_pool() -> type[Pool]:
    from engine.worker.pool_gevent import GeventPool

    return GeventPool


class _Pools(Mapping[str, type]):
    """The pools by name. The asyncio and gevent pools are imported when chosen: asyncio (with
    ``ssl``, which it loads) is several MB a worker tree that runs another pool never needs."""

    _loaders: dict[str, Callable[[], type]] = {
        "prefork": lambda: PreforkPool,
        "threads": lambda: ThreadPool,
        "solo": lambda: SoloPool,
        "asyncio": _asyncio_pool,
        "gevent": _gevent_pool,
    }

    def __getitem__(self, name: str) -> type:
        return self._loaders[name]()

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)


POOLS = _Pools()
# Sane upper bounds (README "Workers"): beyond them a typo forks without limit or fetches the queue.
MAX_CONCURRENCY = 1024
MAX_PREFETCH_MULTIPLIER = 1024


class ColdShutdown(BaseException):
    """Raised on the main thread by a second interrupt: stop now, hand everything back."""


def _check_sizes(concurrency: int, multiplier: int) -> None:
    """A pool of -1 would hold a message it can never run; 100,000 would fork without limit."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ImproperlyConfigured(f"concurrency must be 1 to {MAX_CONCURRENCY}, not {concurrency}")
    if not 1 <= multiplier <= MAX_PREFETCH_MULTIPLIER:
        raise ImproperlyConfigured(f"prefetch multiplier must be 1 to {MAX_PREFETCH_MULTIPLIER}, not {multiplier}")


def node_name(template: str | None) -> str:
    host = socket.gethostname()
    name = template or "tqctl@%h"
    return (
        name.replace("%h", host)
        .replace("%n", host.split(".")[0])
        .replace("%d", host.partition(".")[2])
        .replace("%p", str(os.getpid()))
    )


class _Revokes(RevokedSet):
    """The revoked ids, and each revoke passed on as it arrives (remote control and the broker's
    store both write here): a prefork job waiting in the shared queue must not start."""

    def __init__(self, on_revoke: Callable[[Iterable[str]], None]) -> None:
        super().__init__()
        self._on_revoke = on_revoke

    def add(self, task_id: str) -> None:
        super().add(task_id)
        self._on_revoke((task_id,))

    def update(self, task_ids: Iterable[str]) -> None:
        ids = list(task_ids)
        super().update(ids)
        self._on_revoke(ids)


class Worker:
    """Owns the parts and the books; each part owns its own state.

    Parts: ``consumer`` (fetch and sort), ``pool`` (run), ``settlement`` (every ack, requeue,
    dead letter and hand-back), ``observers`` (events, history, log lines, signals), ``capacity``
    (the prefetch window), ``maintenance`` (lease, reaping, due ETAs), ``remote`` (control).

    The books (``reserved``, ``active``, ``processed``, ``lost_counts``, ``kill_signals``) are
    plain dicts written by the consumer thread (``reserved``), the pool's threads or collector
    (all of them) and read by remote control: each change is one dict operation, atomic under the
    GIL, and a job is in at most one of ``reserved``/``active``; readers copy before iterating.
    """

    def __init__(
        self,
        app: App,
        *,
        concurrency: int | None = None,
        pool: str = "prefork",
        queues: Sequence[str] | None = None,
        hostname: str | None = None,
        prefetch_multiplier: int | None = None,
        autoscale: tuple[int, int] | None = None,
        broker: Any = None,
        owner: str | None = None,
    ) -> None:
        """``broker`` and ``owner`` are given to a work-sharing prefork child (``sharing``): its
        fetches go through the shared queue and land in its parent's in-flight record."""
        self.app = app
        conf = app.conf
        self.hostname = node_name(hostname)
        self.owner = owner or f"{self.hostname}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self.queues = list(queues or [conf.task_default_queue])
        self.concurrency = int(concurrency or conf.worker_concurrency or os.cpu_count() or 1)
        if pool == "solo":
            self.concurrency = 1
        multiplier = prefetch_multiplier or conf.worker_prefetch_multiplier or 1
        _check_sizes(self.concurrency, int(multiplier))
        self.prefetch_multiplier = int(multiplier)
        if autoscale:  # as Celery's: the pool starts at MIN (ours never below one process), and the
            # prefetch window is sized for MAX, so work waits in the worker and the pool grows to it
            _check_sizes(autoscale[0], self.prefetch_multiplier)
            self.concurrency = max(1, autoscale[1])
        self.prefetch = max(1, (autoscale[0] if autoscale else self.concurrency) * self.prefetch_multiplier)
        self.pool_kind = pool
        # Only prefork children are recycled: the other pools ignore the limits, as Celery's do.
        self.recycle = RecycleLimits.of(conf) if pool == "prefork" else RecycleLimits()
        self.broker = broker if broker is not None else app.broker
        self.stopping = threading.Event()
        self.cold = threading.Event()
        self.capacity = Capacity(self.prefetch, self.stopping)
        self.settlement = Settlement(app, self.broker, self.owner, self.hostname)
        self.reserved: dict[str, Job] = {}
        self.active: dict[str, Job] = {}
        self.lost_counts: dict[str, int] = {}
        self.processed: dict[str, int] = {}
        self.revoked = _Revokes(self._revoked_now)  # bounded by size and age, as the broker's 3-hour store
        self.kill_signals: dict[str, int] = {}
        self.started_at = time.time()
        self.autoscale = autoscale
        self.masked_broker = mask_url(self.broker.url)
        self.fanout, self.side_note = worker_fanout(self.broker.url, app.backend_url())
        # A run's record is buffered before its event and stored before the event is published:
        # a console that subscribes and then replays history never falls between the two.
        self.history = HistoryWriter(self.fanout.client, keep=int(conf.tqctl_history_size))
        self.events = EventDispatcher(
            self.fanout,
            self.hostname,
            enabled=bool(conf.worker_send_task_events),
            batch=HELD_EVENTS,
            before_publish=self.history.flush,
        )
        self._next_heartbeat = 0.0
        self._stop_signals = itertools.count()  # SIGTERM/SIGINT received so far (``install_signals``)
        self.consumer = Consumer(self)
        self.observers = Observers(
            TaskHistory(self.history, self.hostname),
            TaskEvents(self.events),
            TaskLog(),
            TaskSignals(self.hostname, self.consumer),
        )
        self.pool: Pool = POOLS[pool](self, self.concurrency)
        self.autoscaler = Autoscaler(self.pool)
        self.maintenance = Maintenance(self)
        self.remote = RemoteControl(self, self.fanout)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        signals.celeryd_init.send(
            sender=self.hostname,
            instance=self,
            conf=self.app.conf,
            options={
                "concurrency": self.concurrency,
                "pool": self.pool_kind,
                "queues": self.queues,
                "hostname": self.hostname,
            },
        )
        signals.worker_init.send(sender=self)
        self.broker.ping()  # first: a broker it cannot use is the one line a user then reads
        if self.side_note:
            log.warning(self.side_note)
        self.broker.declare(self.queues)
        self.revoked.update(load_revoked(self.fanout))
        self.maintenance.beat()
        # Before the pool forks: collecting custom commands reads every module's namespace, and the
        # reference counts it writes would copy those pages into each child (about 8 MB a child).
        self.remote.load_custom()
        self.pool.start()
        self.remote.thread.start()
        self._heart("worker-online", **self._worker_fields())
        self.maintenance.thread.start()
        if self.pool.shared is None:  # work-sharing children fetch for themselves
            self.consumer.thread.start()
        signals.worker_ready.send(sender=self.consumer)
        # The pool's size at start; under autoscale it moves within the range shown (idle, it shrinks
        # to the minimum within seconds), so the figure alone would soon be wrong.
        scale = f" (autoscale {self.autoscale[1]}-{self.autoscale[0]})" if self.autoscale else ""
        log.info(
            "%s ready: pool=%s concurrency=%d%s queues=%s",
            self.hostname,
            self.pool.kind,
            self.concurrency,
            scale,
            ",".join(self.queues),
        )

    def run(self, install_signals: bool = True) -> int:
        """Start, serve until told to stop, shut down. Returns the process exit code."""
        if install_signals:
            self.install_signals()
        self.start()
        try:
            while not self.stopping.is_set():
                self.pool.run_main(self.stopping)
        except ColdShutdown:
            self.cold.set()
        self.shutdown()
        return 0

    def install_signals(self) -> None:
        def warm(signum: int, frame: Any) -> None:
            # Counted first, in one step: a second Ctrl-C can run this handler again inside the
            # first one (Python calls a pending handler at its next check, even from a handler),
            # before ``stopping`` is set below. Before, that second press was taken for the first:
            # a second warm stop, so the worker waited its shutdown timeout on running tasks.
            again = next(self._stop_signals) > 0 or self.stopping.is_set()
            if again and signum == signal.SIGINT:
                self.cold.set()
                log.warning("cold shutdown: handing back every unfinished task")
                if self.pool.kind == "solo":
                    raise ColdShutdown()
                return
            log.warning("warm shutdown (%s): finishing running tasks", signal.Signals(signum).name)
            signals.worker_shutting_down.send(
                sender=self.hostname, sig=signal.Signals(signum).name, how="Warm", exitcode=0
            )
            self.stopping.set()
            self.capacity.wake()

        def cold(signum: int, frame: Any) -> None:
            self.stopping.set()
            self.cold.set()
            if self.pool.kind == "solo":
                raise ColdShutdown()

        signal.signal(signal.SIGTERM, warm)
        signal.signal(signal.SIGINT, warm)
        signal.signal(signal.SIGQUIT, cold)

    def request_stop(self, cold: bool = False) -> None:
        if cold:
            self.cold.set()
        self.stopping.set()
        self.capacity.wake()

    def wake(self) -> None:
        self.capacity.wake()

    def shutdown(self) -> None:
        """Stop in reverse order and hand back what is unfinished. A cold stop's waits share one
        ``Deadline``, taken when it starts (here, or mid-way through a warm stop)."""
        self.stopping.set()
        self.capacity.wake()
        deadline = Deadline(COLD_STOP) if self.cold.is_set() else None
        if deadline is not None:
            deadline.join(self.consumer.thread, "the consumer thread")
        elif self.consumer.thread.is_alive():
            self.consumer.thread.join(3)  # its blocking fetch ends within a second
        handed = self.consumer.take_held()
        if deadline is not None:
            unfinished = self.pool.terminate(deadline)
        else:
            unfinished, deadline = self._stop_pool_warm()
        self.maintenance.stop(deadline)
        for job in handed:
            self.reserved.pop(job.id, None)
        # Each job once: a warm stop's thread and the cold stop that cut in may both report one.
        self.settlement.hand_back(list({id(job): job for job in handed + unfinished}.values()))
        self._say_goodbye()
        signals.worker_shutdown.send(sender=self)
        log.info("%s stopped", self.hostname)

    def _say_goodbye(self) -> None:
        try:
            self.events.flush()
            self.history.flush()
            self._heart("worker-offline", **self._worker_fields())
        except Exception as exc:  # the broker may be the reason we stop
            log.debug("could not send worker-offline: %s", exc)

    def drain(self, timeout: float) -> None:
        """Stop consuming, wait until nothing is active or reserved (or ``timeout``), then stop."""
        self.queues = []
        deadline = time.monotonic() + timeout
        self.sync_children()
        while self._holding() and time.monotonic() < deadline:
            time.sleep(DRAIN_POLL)
        self.request_stop()

    def terminate(self, task_id: str, signum: int) -> bool:
        """Kill the process running ``task_id`` (prefork); the task ends REVOKED."""
        self.revoked.add(task_id)
        self.kill_signals[task_id] = signum
        self.refresh_books()
        return task_id in self.active and self.pool.kill_job(task_id, signum)

    def _stop_pool_warm(self) -> tuple[list[Job], Deadline | None]:
        """The pool's warm stop, on a thread of its own so a cold stop can cut in: then the jobs,
        and the cold stop's deadline for the waits still to come."""
        timeout = float(self.app.conf.tqctl_shutdown_timeout)
        result: list[Job] = []
        stopper = threading.Thread(target=lambda: result.extend(self.pool.stop(timeout)), daemon=True)
        stopper.start()
        while stopper.is_alive():
            stopper.join(0.1)
            if self.cold.is_set():
                deadline = Deadline(COLD_STOP)
                result.extend(self.pool.terminate(deadline))
                return result, deadline
        return result, None

    # -- from the consumer --------------------------------------------------------------------
    def make_job(self, delivery: Delivery, message: TaskMessage, task: Task) -> Job:
        hard, soft = message.timelimit
        hard = hard or task.time_limit or self.app.conf.task_time_limit
        soft = soft or task.soft_time_limit or self.app.conf.task_soft_time_limit
        acks_late = task.opt("acks_late", "task_acks_late")
        return Job(delivery, message, task, bool(acks_late), hard, soft, epoch=self.consumer.epoch)

    def hold(self, job: Job) -> None:
        """A rate-limited job waits in the consumer, holding its slot."""
        self.capacity.take()
        self.reserved[job.id] = job

    def dispatch(self, job: Job) -> None:
        if job.id not in self.reserved:
            self.capacity.take()
            self.reserved[job.id] = job
        self.observers.received(job)
        self.pool.submit(job)

    def forget(self, tag: str) -> None:
        """Undo a half-done dispatch of the message ``tag`` (its sorting failed): no slot stays taken."""
        for jobs in (self.reserved, self.active):
            job = next((j for j in list(jobs.values()) if j.delivery.tag == tag), None)
            if job is not None:
                jobs.pop(job.id, None)
                self.capacity.release()
                return

    def refresh_books(self) -> None:
        """``active`` and ``reserved`` as work-sharing children hold them (the parent never sees
        their jobs go by); other pools keep the books as jobs pass, so nothing to do."""
        shared = self.pool.shared
        if shared is None:
            return
        active, reserved = shared.books()
        self.active.clear()
        self.active.update(active)
        self.reserved.clear()
        self.reserved.update(reserved)

    def _counts(self) -> tuple[int, int]:
        """(reserved, active): the books, or for work-sharing children their slot table."""
        shared = self.pool.shared
        return shared.counts() if shared is not None else (len(self.reserved), len(self.active))

    def _holding(self) -> bool:
        reserved, active = self._counts()
        return bool(reserved or active)

    def sync_children(self) -> None:
        """Work-sharing children: the state a remote command changed, sent to each (queues,
        revoked stamps, rate and time limits, events on or off)."""
        shared = self.pool.shared
        if shared is None:
            return
        tasks = self.app.tasks
        shared.tell(
            (
                "state",
                {
                    "queues": list(self.queues),
                    "stamps": self.revoked.stamps.as_dict(),
                    "rates": {name: t.rate_limit for name, t in tasks.items() if t.rate_limit},
                    "limits": {
                        name: (t.time_limit, t.soft_time_limit)
                        for name, t in tasks.items()
                        if t.time_limit or t.soft_time_limit
                    },
                    "events": self.events.enabled,
                },
            )
        )

    def on_lease(self, epoch: int, until: float) -> None:
        """Each beat: pool processes that start jobs on their own (prefork) check the lease too."""
        self.pool.lease(epoch, until)

    def _revoked_now(self, task_ids: Iterable[str]) -> None:
        """A job waiting where only its pool can stop it (prefork's shared queue) must not start."""
        self.pool.cancel(task_ids)

    def is_revoked(self, task_id: str) -> bool:
        return task_id in self.revoked

    def on_deferred(self, message: TaskMessage, when: float | None = None) -> None:
        eta = message.eta
        due = when if when is not None else (eta.timestamp() if eta is not None else None)
        if due is not None:
            self.maintenance.expect_due(due)

    def revoked_before_run(self, delivery: Delivery, message: TaskMessage, why: str) -> None:
        self.settlement.revoked(delivery, message, why)
        self.observers.revoked(message, self.app.tasks.get(message.name), why)

    # -- from the pool (``PoolHost``) -----------------------------------------------------------
    def admit(self, job: Job) -> bool:
        """May ``job`` run? False means it never will here (shutting down, revoked, or no longer
        ours); its slot is then released and the message settled or left for the hand-back.
        An admitted job stays in ``reserved`` until ``on_started``."""
        if self.stopping.is_set():
            # Shutting down: never start a reserved job. It is still unacked in our in-flight
            # hash, so the hand-back returns it to its queue with the rest.
            self.reserved.pop(job.id, None)
            self.capacity.release()
            return False
        why = self.revoked.why(job.message)  # by id, by stamp, or expired while it waited
        if why is not None:
            self.on_skipped(job, why)
            return False
        if not self.settlement.claim(job, self.maintenance.lease_holds(job.epoch), self.cold):
            self.reserved.pop(job.id, None)
            log.warning(
                "%s[%s] not started: its message was taken back while this worker looked dead "
                "(frozen or cut off from the broker); it runs elsewhere",
                job.name,
                job.id,
            )
            self.capacity.release()
            return False
        return True

    def on_started(self, job: Job, at: float | None = None) -> None:
        """The job runs from ``at`` (wall clock; now if not given, as Celery's ``time_accepted``
        from the child); its pool process, if any, is in ``job.worker_pid``."""
        job.time_start = at or time.time()
        self.reserved.pop(job.id, None)
        self.active[job.id] = job
        self.observers.started(job)

    def on_skipped(self, job: Job, why: str = "revoked") -> None:
        """Revoked (or expired) before it started: it never runs; settled as such."""
        self.reserved.pop(job.id, None)
        self.revoked_before_run(job.delivery, job.message, why)
        self.capacity.release()

    def on_start(self, job: Job) -> bool:
        """Called by the pool just before running; False means skip it (revoked, or stopping)."""
        if not self.admit(job):
            return False
        self.on_started(job)
        return True

    def on_done(self, job: Job, outcome: Outcome) -> None:
        self.active.pop(job.id, None)
        self.lost_counts.pop(job.id, None)
        self.processed[job.name] = self.processed.get(job.name, 0) + 1
        self.settlement.finished(job, outcome)
        self.capacity.release(wake=False)
        self.observers.finished(job, outcome)
        self.consumer.top_up()

    def on_lost(self, job: Job, reason: str, exc: BaseException) -> None:
        self.active.pop(job.id, None)
        try:
            if job.id in self.revoked and reason == "worker_lost":
                signum = self.kill_signals.pop(job.id, None)
                self.settlement.terminated(job)
                self.observers.revoked(job.message, job.task, "terminated", job, signum)
                return
            count = self.lost_counts[job.id] = self.lost_counts.get(job.id, 0) + 1
            if self.settlement.requeues_lost(job, reason, count):
                self.settlement.requeue_lost(job, exc)
            else:
                self.observers.failed(job, exc)
                self.settlement.fail_lost(job, reason, exc, count)
        finally:
            self.capacity.release()

    # -- from maintenance ----------------------------------------------------------------------
    def on_heartbeat(self) -> None:
        """Each owner heartbeat: refresh revokes from the broker, autoscale."""
        self.revoked.update(load_revoked(self.fanout))
        if self.autoscale:
            reserved, active = self._counts()
            self.autoscaler.step(self.autoscale, reserved, active)

    def on_tick(self, now: float) -> None:
        if self.settlement.pending:
            self.settlement.retry_pending()
        self.events.flush()
        self.history.flush()
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + HEARTBEAT_FREQ
            self.send_heartbeat()

    def _worker_fields(self, freq: float = HEARTBEAT_FREQ) -> dict[str, Any]:
        shared = self.pool.shared  # work-sharing children: from shared memory
        active = shared.running() if shared is not None else len(self.active)
        return worker_fields(freq, active, sum(self.processed.values()))

    def send_heartbeat(self, on_demand: bool = False) -> None:
        if on_demand:
            self._heart("worker-heartbeat", freq=ON_DEMAND_HEARTBEAT_FREQ)
        else:
            self._heart("worker-heartbeat", **self._worker_fields())

    def _heart(self, event_type: str, **fields: Any) -> None:
        """A worker event, then Celery's ``heartbeat_sent`` (its Heart fires it for online,
        heartbeat and offline alike; monitoring hooks use it as a liveness tick)."""
        self.events.send(event_type, **fields)
        if self.events.enabled and signals.heartbeat_sent.receivers:
            signals.heartbeat_sent.send(sender=self)
