"""``Worker``: starts its parts in order, settles every message, and shuts down cleanly.

Start order: broker check → owner heartbeat → pool → maintenance → consumer. Stop runs in
reverse, and whatever was fetched but not finished goes back to its queue.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import redis

from engine import signals, states
from engine.broker.base import DeadLetter, Delivery
from engine.broker.fanout import RedisFanout
from engine.config import mask_url, url_host
from engine.control import load_revoked
from engine.events.dispatcher import EventDispatcher
from engine.exceptions import BrokerUnavailable, ImproperlyConfigured
from engine.history import HistoryWriter
from engine.protocol.events import worker_fields
from engine.protocol.results import encode_exception, meta, revoked_result
from engine.protocol.task import TaskMessage
from engine.request import from_message
from engine.worker.consumer import Consumer
from engine.worker.job import Job
from engine.worker.maintenance import Maintenance
from engine.worker.pool import Pool, SoloPool, ThreadPool
from engine.worker.pool_asyncio import AsyncioPool
from engine.worker.pool_gevent import GeventPool
from engine.worker.prefork import PreforkPool
from engine.worker.remote import RemoteControl
from engine.worker.revoked import RevokedSet

if TYPE_CHECKING:
    from engine.app import App
    from engine.task import Task
    from engine.trace import Outcome

log = logging.getLogger("engine.worker")
HEARTBEAT_FREQ = 2.0
UNREACHABLE = (redis.RedisError, BrokerUnavailable, OSError)
POOLS: dict[str, type] = {
    "prefork": PreforkPool,
    "threads": ThreadPool,
    "solo": SoloPool,
    "asyncio": AsyncioPool,
    "gevent": GeventPool,
}
# Sane upper bounds (README "Workers"): beyond them a typo forks without limit or fetches the queue.
MAX_CONCURRENCY = 1024
MAX_PREFETCH_MULTIPLIER = 1024


class ColdShutdown(BaseException):
    """Raised on the main thread by a second interrupt: stop now, hand everything back."""


class Acker:
    """Acks collected from any thread, sent in batches with the next broker round trip."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tags: list[str] = []

    def add(self, tag: str) -> None:
        with self._lock:
            self._tags.append(tag)

    def take(self) -> list[str]:
        with self._lock:
            tags, self._tags = self._tags, []
        return tags

    def put_back(self, tags: Sequence[str]) -> None:
        with self._lock:
            self._tags[:0] = tags


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


class Worker:
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
    ) -> None:
        self.app = app
        conf = app.conf
        self.hostname = node_name(hostname)
        self.owner = f"{self.hostname}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self.queues = list(queues or [conf.task_default_queue])
        self.concurrency = int(concurrency or conf.worker_concurrency or os.cpu_count() or 1)
        if pool == "solo":
            self.concurrency = 1
        multiplier = prefetch_multiplier or conf.worker_prefetch_multiplier or 1
        _check_sizes(self.concurrency, int(multiplier))
        self.prefetch = max(1, self.concurrency * int(multiplier))
        self.pool_kind = pool
        self.broker = app.broker
        self.acker = Acker()
        self.stopping = threading.Event()
        self.cold = threading.Event()
        self._room = threading.Condition()
        self.outstanding = 0
        self.reserved: dict[str, Job] = {}
        self.active: dict[str, Job] = {}
        self.lost_counts: dict[str, int] = {}
        self.processed: dict[str, int] = {}
        self.revoked = RevokedSet()  # bounded by size and age, as the broker's 3-hour store
        self.kill_signals: dict[str, int] = {}
        self._unsettled: list[tuple[str, Callable[[], object]]] = []  # see ``settle``
        self.started_at = time.time()
        self.autoscale = autoscale
        if autoscale:
            self.concurrency = max(1, min(self.concurrency, autoscale[0]))
        self.masked_broker = mask_url(self.broker.url)
        self.fanout = RedisFanout(self.broker.url)
        self.events = EventDispatcher(self.fanout, self.hostname, enabled=bool(conf.worker_send_task_events))
        self.history = HistoryWriter(self.fanout.client, keep=int(conf.tqctl_history_size))
        self._next_heartbeat = 0.0
        self._idle_since = time.monotonic()
        self.pool: Pool = POOLS[pool](self, self.concurrency)
        self.consumer = Consumer(self)
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
        self.broker.ping()
        self.broker.declare(self.queues)
        self.revoked.update(load_revoked(self.fanout))
        self.maintenance.beat()
        self.pool.start()
        self.remote.thread.start()
        self.events.send("worker-online", **self._worker_fields())
        self.maintenance.thread.start()
        self.consumer.thread.start()
        signals.worker_ready.send(sender=self.consumer)
        log.info(
            "%s ready: pool=%s concurrency=%d queues=%s",
            self.hostname,
            self.pool.kind,
            self.concurrency,
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
            if self.stopping.is_set() and signum == signal.SIGINT:
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
            self.wake()

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
        self.wake()

    def shutdown(self) -> None:
        self.stopping.set()
        self.wake()
        self.consumer.thread.join(3)  # its blocking fetch ends within a second
        handed = self.consumer.take_held()
        if self.cold.is_set():
            unfinished = self.pool.terminate()
        else:
            unfinished = self._stop_pool_warm()
        self.maintenance.stop()
        for job in handed:
            self.reserved.pop(job.id, None)
        if self._unsettled:
            try:
                self._settle_pending()
            except Exception as exc:  # what is still in flight is handed back below
                log.warning("could not finish pending settlements: %r", exc)
        self._hand_back(handed + unfinished)
        self._say_goodbye()
        signals.worker_shutdown.send(sender=self)
        log.info("%s stopped", self.hostname)

    def _say_goodbye(self) -> None:
        try:
            self.events.flush()
            self.history.flush()
            self.events.send("worker-offline", **self._worker_fields())
        except Exception as exc:  # the broker may be the reason we stop
            log.debug("could not send worker-offline: %s", exc)

    def drain(self, timeout: float) -> None:
        """Stop consuming, wait until nothing is active or reserved (or ``timeout``), then stop."""
        self.queues = []
        deadline = time.monotonic() + timeout
        while (self.active or self.reserved) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.request_stop()

    def terminate(self, task_id: str, signum: int) -> bool:
        """Kill the process running ``task_id`` (prefork); the task ends REVOKED."""
        self.revoked.add(task_id)
        self.kill_signals[task_id] = signum
        return task_id in self.active and self.pool.kill_job(task_id, signum)

    def _stop_pool_warm(self) -> list[Job]:
        timeout = float(self.app.conf.tqctl_shutdown_timeout)
        result: list[Job] = []
        stopper = threading.Thread(target=lambda: result.extend(self.pool.stop(timeout)), daemon=True)
        stopper.start()
        while stopper.is_alive():
            stopper.join(0.1)
            if self.cold.is_set():
                result.extend(self.pool.terminate())
                break
        return result

    def _hand_back(self, jobs: Sequence[Job]) -> None:
        """Everything unsettled returns to the front of its queue, then the owner retires."""
        try:
            self._return_unsettled(jobs)
        except (redis.RedisError, OSError) as exc:
            # Late-ack work stays in our in-flight record in the broker: a live worker's reaper
            # returns it once our heartbeat is old. Early-acked jobs left that record; name them.
            stranded = [j.id for j in jobs if j.acked]
            detail = (
                f"; {len(stranded)} started early-ack task(s) not handed back: {', '.join(stranded)}"
                if stranded
                else ""
            )
            raise BrokerUnavailable(
                f"broker at {url_host(self.broker.url)} unreachable while stopping ({exc}): unfinished "
                f"late-ack messages return to their queues when another worker sees this one gone{detail}"
            ) from None

    def _return_unsettled(self, jobs: Sequence[Job]) -> None:
        acks = self.acker.take()
        self.broker.ack(self.owner, acks)
        early = [(j.delivery.queue_key, j.delivery.raw) for j in jobs if j.acked]
        self.broker.hand_back(early)
        returned = self.broker.requeue_all(self.owner) + len(early)
        self.broker.retire(self.owner)
        if returned:
            log.warning("handed back %d unfinished message(s)", returned)

    # -- capacity -----------------------------------------------------------------------------
    def room(self) -> int:
        return self.prefetch - self.outstanding

    def wait_for_room(self, timeout: float) -> None:
        with self._room:
            if self.outstanding >= self.prefetch and not self.stopping.is_set():
                self._room.wait(timeout)

    def wake(self) -> None:
        with self._room:
            self._room.notify_all()

    def _release(self, wake: bool = True) -> None:
        with self._room:
            self.outstanding -= 1
            if wake:
                self._room.notify()

    # -- from the consumer --------------------------------------------------------------------
    def make_job(self, delivery: Delivery, message: TaskMessage, task: Task) -> Job:
        hard, soft = message.timelimit
        hard = hard or task.time_limit or self.app.conf.task_time_limit
        soft = soft or task.soft_time_limit or self.app.conf.task_soft_time_limit
        acks_late = task.opt("acks_late", "task_acks_late")
        return Job(delivery, message, task, bool(acks_late), hard, soft, epoch=self.consumer.epoch)

    def hold(self, job: Job) -> None:
        with self._room:
            self.outstanding += 1
        self.reserved[job.id] = job

    def dispatch(self, job: Job) -> None:
        if job.id not in self.reserved:
            with self._room:
                self.outstanding += 1
            self.reserved[job.id] = job
        try:
            self.on_received(job)
        except Exception as exc:  # events are best effort: never a reason not to run the task
            log.warning("could not announce %s[%s]: %r", job.name, job.id, exc)
        self.pool.submit(job)

    def forget(self, tag: str) -> None:
        """Undo a half-done dispatch of the message ``tag`` (its sorting failed): no slot stays taken."""
        for jobs in (self.reserved, self.active):
            job = next((j for j in jobs.values() if j.delivery.tag == tag), None)
            if job is not None:
                jobs.pop(job.id, None)
                self._release()
                return

    def is_revoked(self, task_id: str) -> bool:
        return task_id in self.revoked

    # -- from the pool ------------------------------------------------------------------------
    def on_start(self, job: Job) -> bool:
        """Called by the pool just before running; False means skip it (revoked, or stopping)."""
        self.reserved.pop(job.id, None)
        if self.stopping.is_set():
            # Shutting down: never start a reserved job. It is still unacked in our in-flight
            # hash, so ``_hand_back`` returns it to its queue with the rest.
            self._release()
            return False
        why = self.revoked.why(job.message)  # by id, by stamp, or expired while it waited
        if why is not None:
            self.consumer.settle_revoked(job.delivery, job.message, why)
            self._release()
            return False
        if not self._still_ours(job):
            log.warning(
                "%s[%s] not started: its message was taken back while this worker looked dead "
                "(frozen or cut off from the broker); it runs elsewhere",
                job.name,
                job.id,
            )
            self._release()
            return False
        job.time_start = time.time()
        self.active[job.id] = job
        if not job.acks_late:
            job.acked = True  # the claim removed the record: at most once from here
        if job.task.send_events:
            self.events.task("task-started", uuid=job.id, pid=job.worker_pid or os.getpid())
        return True

    def _still_ours(self, job: Job) -> bool:
        """The fence: run only what the broker still records as ours. An early-ack job takes its
        record (the ack must land before the task runs: at most once); a late-ack one is checked,
        unless the lease proves nobody can have taken it (no round trip in the normal case).
        Broker away: wait for it rather than guess, since either guess can run a task twice or
        lose it; pending batched acks ride along."""
        take = not job.acks_late
        if not take and self.maintenance.lease_holds(job.epoch):
            return True
        delay = 0.1
        while True:
            acks = self.acker.take() if take else []
            try:
                return self.broker.claim(self.owner, job.delivery.tag, take, acks)
            except (redis.RedisError, BrokerUnavailable, OSError) as exc:
                self.acker.put_back(acks)
                if self.cold.is_set():
                    return False  # stays recorded (or claimed): handed back or reaped, never run here
                if delay == 0.1:
                    log.warning(
                        "cannot confirm %s[%s] is still ours, broker unreachable (waiting): %s", job.name, job.id, exc
                    )
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def on_done(self, job: Job, outcome: Outcome) -> None:
        self.active.pop(job.id, None)
        self.lost_counts.pop(job.id, None)
        self.processed[job.name] = self.processed.get(job.name, 0) + 1
        if outcome.internal:
            self._dead_letter_outcome(job, outcome)
        elif outcome.state == states.REJECTED and outcome.requeue and not job.acked:
            tag = job.delivery.tag
            self.settle(f"requeue {job.id}", lambda: self.broker.requeue(self.owner, [tag]))
        elif not job.acked:
            job.acked = True
            self.acker.add(job.delivery.tag)
        self._release(wake=False)
        try:
            self.on_finished(job, outcome)
        except Exception as exc:  # events and history are best effort
            log.warning("could not record the outcome of %s[%s]: %r", job.name, job.id, exc)
        self.consumer.top_up()

    def _dead_letter_outcome(self, job: Job, outcome: Outcome) -> None:
        """The run's outcome could not be recorded (result store down, callbacks unsendable): the
        message goes to the dead-letter store with the reason, where an operator sees and requeues it,
        never acked as if all went well. (An early-acked message is already off the in-flight record:
        its letter is written from the bytes we still hold.)"""
        log.error(
            "Task %s[%s] ran, but its outcome could not be recorded (%s): %s",
            job.name,
            job.id,
            outcome.internal,
            outcome.exception_repr,
        )
        detail = f"the task ran but its outcome could not be recorded: {outcome.exception_repr}"
        letter = DeadLetter(
            id=str(uuid.uuid4()),
            queue=job.delivery.queue,
            reason=outcome.internal or "",
            detail=detail,
            time=time.time(),
            task_id=job.id,
            task_name=job.name,
            worker=self.hostname,
            raw=job.delivery.raw,
        )
        tag = "" if job.acked else job.delivery.tag
        job.acked = True
        self.settle(f"dead-letter {job.id}", lambda: self.broker.dead_letter(self.owner, tag, letter))
        backend = self.app.backend
        if backend is not None and outcome.internal != "result_not_stored" and not job.message.ignore_result:
            name = (outcome.exception_repr or "").split("(", 1)[0]  # only the repr crosses a child's pipe
            error = {
                "exc_type": name if name.isidentifier() else "Exception",
                "exc_module": "builtins",
                "exc_message": [f"internal error: {outcome.exception_repr}"],
            }
            failure = meta(
                job.id,
                states.FAILURE,
                error,
                traceback=outcome.traceback,
                parent_id=job.message.parent_id,
                group_id=job.message.group,
            )
            self.settle(f"store the failure of {job.id}", lambda: backend.store(job.id, failure))

    def settle(self, what: str, call: Callable[[], object]) -> None:
        """Do a settlement now or, with the broker (or result store) away, on each maintenance tick
        until it lands: a failed requeue or dead letter must neither kill the calling thread nor
        be forgotten."""
        try:
            call()
        except UNREACHABLE as exc:
            log.warning("could not %s now, retrying until it lands: %s", what, exc)
            with self._room:
                self._unsettled.append((what, call))

    def _settle_pending(self) -> None:
        with self._room:
            pending, self._unsettled = self._unsettled, []
        for n, (what, call) in enumerate(pending):
            try:
                call()
            except UNREACHABLE:
                with self._room:
                    self._unsettled[:0] = pending[n:]
                return
            log.info("settled later: %s", what)

    def on_lost(self, job: Job, reason: str, exc: BaseException) -> None:
        self.active.pop(job.id, None)
        if job.id in self.revoked and reason == "worker_lost":
            self._terminated(job, exc)
            self._release()
            return
        limit = int(self.app.conf.tqctl_delivery_limit)
        count = self.lost_counts[job.id] = self.lost_counts.get(job.id, 0) + 1
        try:
            if reason == "worker_lost" and job.acks_late and not job.acked and count < limit:
                log.warning("%s[%s] lost its process (%s); requeued", job.name, job.id, exc)
                tag = job.delivery.tag
                self.settle(f"requeue {job.id}", lambda: self.broker.requeue(self.owner, [tag]))
            else:
                self._fail_lost(job, reason, exc, count >= limit and reason == "worker_lost")
        finally:
            self._release()

    def _terminated(self, job: Job, exc: BaseException) -> None:
        code = job.worker_pid
        backend = self.app.backend
        if backend is not None and not job.message.ignore_result:
            revoked = meta(job.id, states.REVOKED, revoked_result("terminated"))
            self.settle(f"store the revocation of {job.id}", lambda: backend.store(job.id, revoked))
        if not job.acked:
            job.acked = True
            self.acker.add(job.delivery.tag)
        log.warning("Task %s[%s] terminated (pid %s): %s", job.name, job.id, code, exc)
        signum = self.kill_signals.pop(job.id, None)
        self.events.task("task-revoked", uuid=job.id, terminated=True, signum=signum, expired=False)
        signals.task_revoked.send(
            sender=job.task, request=job.request(self.hostname), terminated=True, signum=signum, expired=False
        )

    def _fail_lost(self, job: Job, reason: str, exc: BaseException, poison: bool) -> None:
        log.error("%s[%s] failed: %r", job.name, job.id, exc)
        try:
            self.events.task("task-failed", uuid=job.id, exception=repr(exc), traceback=None)
            self._remember(job, states.FAILURE, None, repr(exc), None, None)
        except Exception as error:  # best effort, as for every outcome
            log.warning("could not record the failure of %s[%s]: %r", job.name, job.id, error)
        backend = self.app.backend
        if backend is not None and not job.message.ignore_result:
            failure = meta(
                job.id,
                states.FAILURE,
                encode_exception(exc),
                parent_id=job.message.parent_id,
                group_id=job.message.group,
            )
            self.settle(f"store the failure of {job.id}", lambda: backend.store(job.id, failure))
        if poison and not job.acked:
            letter = DeadLetter(
                id=job.id,
                queue=job.delivery.queue,
                reason=reason,
                detail=f"lost its process {self.lost_counts[job.id]} times: {exc}",
                time=time.time(),
                task_id=job.id,
                task_name=job.name,
                worker=self.hostname,
                raw=job.delivery.raw,
            )
            tag = job.delivery.tag
            self.settle(f"dead-letter {job.id}", lambda: self.broker.dead_letter(self.owner, tag, letter))
        elif not job.acked:
            self.acker.add(job.delivery.tag)
        job.acked = True

    # -- observation hooks (events arrive with the event bus) ---------------------------------
    def on_received(self, job: Job) -> None:
        m = job.message
        h = m.headers
        if job.task.send_events:  # a task's ``send_events=False`` silences its events, as in Celery
            self.events.task(
                "task-received",
                uuid=m.id,
                name=m.name,
                args=h.get("argsrepr") or repr(m.args),
                kwargs=h.get("kwargsrepr") or repr(m.kwargs),
                root_id=m.root_id,
                parent_id=m.parent_id,
                retries=m.retries,
                eta=h.get("eta"),
                expires=h.get("expires"),
                queue=job.delivery.queue,
            )
        if log.isEnabledFor(logging.INFO):
            log.info("Task %s[%s] received", job.name, job.id)
        if signals.task_received.receivers:
            signals.task_received.send(sender=self.consumer, request=job.request(self.hostname))

    def on_finished(self, job: Job, outcome: Outcome) -> None:
        self._send_outcome(job, outcome)
        self._remember(
            job, outcome.state, outcome.result_repr, outcome.exception_repr, outcome.traceback, outcome.runtime
        )
        # A failure was logged by engine.trace where it ran, with its traceback (none for ``throws``).
        if outcome.state != states.FAILURE and log.isEnabledFor(logging.INFO):
            verb = "succeeded" if outcome.state == states.SUCCESS else outcome.state.lower()
            log.info(
                "Task %s[%s] %s in %.4fs: %s",
                job.name,
                job.id,
                verb,
                outcome.runtime,
                outcome.result_repr or outcome.exception_repr,
            )

    def _remember(
        self,
        job: Job,
        state: str,
        result: str | None,
        exception: str | None,
        traceback: str | None,
        runtime: float | None,
    ) -> None:
        m = job.message
        self.history.record(
            {
                "id": m.id,
                "name": m.name,
                "state": state,
                "args": m.headers.get("argsrepr"),
                "kwargs": m.headers.get("kwargsrepr"),
                "result": result,
                "exception": exception,
                "traceback": traceback,
                "worker": self.hostname,
                "queue": job.delivery.queue,
                "retries": m.retries,
                "root_id": m.root_id,
                "parent_id": m.parent_id,
                "retry_of": m.headers.get("retry_of"),
                "started": job.time_start,
                "finished": time.time(),
                "runtime": runtime,
            },
            job.delivery.raw if state == states.FAILURE else None,
        )

    def _send_outcome(self, job: Job, outcome: Outcome) -> None:
        if not job.task.send_events:
            return
        state, uuid_ = outcome.state, job.id
        if state == states.SUCCESS:
            self.events.task("task-succeeded", uuid=uuid_, result=outcome.result_repr, runtime=outcome.runtime)
        elif state == states.FAILURE:
            self.events.task("task-failed", uuid=uuid_, exception=outcome.exception_repr, traceback=outcome.traceback)
        elif state == states.RETRY:
            self.events.task("task-retried", uuid=uuid_, exception=outcome.exception_repr, traceback=outcome.traceback)
        elif state == states.REJECTED:
            self.events.task("task-rejected", uuid=uuid_, requeue=outcome.requeue)

    def on_deferred(self, message: TaskMessage) -> None:
        eta = message.eta
        if eta is not None:
            self.maintenance.expect_due(eta.timestamp())

    def on_rejected_message(self, letter: DeadLetter) -> None:
        pass

    def on_revoked(self, message: TaskMessage, why: str) -> None:
        self.events.task("task-revoked", uuid=message.id, terminated=False, signum=None, expired=why == "expired")
        log.info("Task %s[%s] %s", message.name, message.id, why)
        task = self.app.tasks.get(message.name)
        if signals.task_revoked.receivers and task is not None:
            signals.task_revoked.send(
                sender=task,
                request=from_message(message, self.hostname),
                terminated=False,
                signum=None,
                expired=why == "expired",
            )

    def on_heartbeat(self) -> None:
        """Each owner heartbeat: refresh revokes from the broker, autoscale."""
        self.revoked.update(load_revoked(self.fanout))
        if self.autoscale:
            self._autoscale()

    def on_tick(self, now: float) -> None:
        if self._unsettled:
            self._settle_pending()
        self.events.flush()
        self.history.flush()
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + HEARTBEAT_FREQ
            self.send_heartbeat()

    def _worker_fields(self, freq: float = HEARTBEAT_FREQ) -> dict[str, Any]:
        return worker_fields(freq, len(self.active), sum(self.processed.values()))

    def send_heartbeat(self, on_demand: bool = False) -> None:
        if on_demand:
            self.events.send("worker-heartbeat", freq=5)
        else:
            self.events.send("worker-heartbeat", **self._worker_fields())

    def _autoscale(self) -> None:
        high, low = self.autoscale or (0, 0)
        size = self.pool.size()
        if self.reserved and size < high:
            self.pool.grow(min(len(self.reserved), high - size))
            self._idle_since = time.monotonic()
        elif not self.reserved and len(self.active) < size:
            if size > low and time.monotonic() - self._idle_since > 3.0:
                self.pool.shrink(1)
                self._idle_since = time.monotonic()
        else:
            self._idle_since = time.monotonic()
