"""Settlement: the one place that acks, requeues, dead-letters and hands back messages.

Every way a fetched message can end goes through here: run and finished (ack, or requeue on
``Reject(requeue=True)``, or dead letter when its outcome could not be recorded), lost with its
process (requeue, fail, or dead letter as poison), revoked or expired before it ran, refused by
the consumer (malformed, unsigned, unknown task), and handed back at shutdown. Writes that must
not be lost (a requeue, a dead letter, a stored failure) are retried on each maintenance tick
while the broker or result store is away (``later``); plain acks are batched (``Acker``) and
ride along with the next fetch or tick.

Called from the consumer thread, pool threads and the prefork collector: ``Acker`` and the
retry list each have a lock; a job's ``acked`` flag is only touched by the thread settling it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from engine import resp, states, trace
from engine.backend.base import Reply
from engine.backend.held import HOLD_MOST
from engine.broker.base import DeadLetter, Delivery, LeaseLapsed
from engine.config import url_host
from engine.exceptions import BackendStoreError, BrokerUnavailable, NotRegistered
from engine.protocol import task as protocol
from engine.protocol.results import encode_exception, meta, revoked_result
from engine.worker.maintenance import lease_span

if TYPE_CHECKING:
    from engine.app import App
    from engine.backend.held import HeldResults
    from engine.broker.base import Broker
    from engine.trace import Outcome
    from engine.worker.job import Job

log = logging.getLogger("engine.worker")
UNREACHABLE = (resp.RedisError, BrokerUnavailable, OSError)
CLAIM_RETRY_FIRST, CLAIM_RETRY_MAX = 0.1, 2.0  # seconds between fence attempts while the broker is away


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


class Settlement:
    def __init__(self, app: App, broker: Broker, owner: str, hostname: str) -> None:
        self.app = app
        self.broker = broker
        self.owner = owner
        self.hostname = hostname
        self.acker = Acker()
        self._lock = threading.Lock()
        self._unsettled: list[tuple[str, Callable[[], object]]] = []
        # A work-sharing child's results written behind (``release_held``); None elsewhere.
        self.held: HeldResults | None = None
        self._awaiting: list[Job] = []  # finished, their results held: acked once written
        self._not_stored: dict[str, str] = {}  # why each, until its job comes by
        self._held_lock, self._release_lock = threading.Lock(), threading.Lock()

    # -- the primitives -----------------------------------------------------------------------
    def later(self, what: str, call: Callable[[], object]) -> None:
        """Do it now or, with the broker (or result store) away, on each tick until it lands: a
        failed requeue or dead letter must neither kill the calling thread nor be forgotten."""
        try:
            call()
        except UNREACHABLE as exc:
            log.warning("could not %s now, retrying until it lands: %s", what, exc)
            with self._lock:
                self._unsettled.append((what, call))

    @property
    def pending(self) -> bool:
        return bool(self._unsettled)

    def retry_pending(self) -> None:
        with self._lock:
            pending, self._unsettled = self._unsettled, []
        for n, (what, call) in enumerate(pending):
            try:
                call()
            except UNREACHABLE:
                with self._lock:
                    self._unsettled[:0] = pending[n:]
                return
            log.info("settled later: %s", what)

    def flush_acks(self) -> None:
        acks = self.acker.take()
        if acks:
            try:
                self.broker.ack(self.owner, acks)
            except Exception:
                self.acker.put_back(acks)
                raise

    def ack(self, job: Job) -> None:
        if not job.acked:
            job.acked = True
            self.acker.add(job.delivery.tag)

    def requeue(self, job: Job) -> None:
        tag = job.delivery.tag
        self.later(f"requeue {job.id}", lambda: self.broker.requeue(self.owner, [tag]))

    def store(self, what: str, message: protocol.TaskMessage, result: dict[str, object], ignore_result: bool) -> None:
        """Store an outcome reached outside a run, with the message's reply address (``rpc://``
        answers the sender directly, and there is no running request to read it from)."""
        backend = self.app.backend
        if backend is not None and not ignore_result:
            props = message.properties
            reply = Reply(str(props.get("reply_to") or ""), str(props.get("correlation_id") or message.id))
            task_id = message.id
            self.later(f"{what} of {task_id}", lambda: backend.store(task_id, result, reply))

    def _letter(
        self, delivery: Delivery, reason: str, detail: str, task_id: object, name: object, letter_id: str = ""
    ) -> DeadLetter:
        return DeadLetter(
            id=letter_id or str(uuid.uuid4()),
            queue=delivery.queue,
            reason=reason,
            detail=detail,
            time=time.time(),
            task_id=task_id if isinstance(task_id, str) else None,
            task_name=name if isinstance(name, str) else None,
            worker=self.hostname,
            raw=delivery.raw,
        )

    # -- before a run -------------------------------------------------------------------------
    def claim(self, job: Job, lease_holds: bool, cold: threading.Event) -> bool:
        """The fence: run only what the broker still records as ours. An early-ack job takes its
        record (the ack must land before the task runs: at most once); a late-ack one is checked,
        unless the lease proves nobody can have taken it (no round trip in the normal case).
        Broker away, or this worker's heartbeat too old there to start a late ack safely (a frozen
        parent: the reaper could take the message back while it runs, and it would run twice):
        wait for it rather than guess, since either guess can run a task twice or lose it;
        pending batched acks ride along."""
        take = not job.acks_late
        if not take and lease_holds:
            return True
        fresh = lease_span(float(self.app.conf.tqctl_owner_timeout))
        delay = CLAIM_RETRY_FIRST
        while True:
            acks = self.acker.take() if take else []
            try:
                ours = self.broker.claim(self.owner, job.delivery.tag, take, acks, fresh)
            except (LeaseLapsed, *UNREACHABLE) as exc:
                self.acker.put_back(acks)
                if cold.is_set():
                    return False  # stays recorded (or claimed): handed back or reaped, never run here
                if delay == CLAIM_RETRY_FIRST:
                    why = exc if isinstance(exc, LeaseLapsed) else f"broker unreachable: {exc}"
                    log.warning("cannot confirm %s[%s] is still ours (waiting), %s", job.name, job.id, why)
                time.sleep(delay)
                delay = min(delay * 2, CLAIM_RETRY_MAX)
                continue
            if ours and take:
                job.acked = True  # the claim removed the record: at most once from here
            return ours

    def revoked(self, delivery: Delivery, message: protocol.TaskMessage, why: str) -> None:
        """Revoked or expired before it ran: acked, and REVOKED stored for a waiting client."""
        tag = delivery.tag
        self.later(f"ack the revoked {message.id}", lambda: self.broker.ack(self.owner, [tag]))
        self.store(
            "store the revocation",
            message,
            meta(message.id, states.REVOKED, revoked_result(why)),
            bool(message.ignore_result),
        )

    def refuse(
        self, delivery: Delivery, reason: str, detail: str, headers: dict[str, object] | None = None
    ) -> DeadLetter:
        """A message that cannot run here goes to the dead-letter store now. Not retried: a broker
        error reaches the fetch loop, whose reconcile hands the message back."""
        headers = headers or {}
        letter = self._letter(delivery, reason, detail, headers.get("id"), headers.get("task"), protocol.new_id())
        self.broker.dead_letter(self.owner, delivery.tag, letter)
        log.error("dead-lettered a message from %s: %s: %s", delivery.queue, reason, detail)
        return letter

    def unknown(self, delivery: Delivery, message: protocol.TaskMessage) -> None:
        detail = f"task {message.name!r} is not registered on {self.hostname}"
        # First: a waiting client learns why.
        failure = meta(message.id, states.FAILURE, encode_exception(NotRegistered(message.name)))
        self.store("store NotRegistered", message, failure, bool(message.ignore_result))
        self.refuse(delivery, "unknown_task", detail, message.headers)

    # -- after a run --------------------------------------------------------------------------
    def finished(self, job: Job, outcome: Outcome) -> None:
        if outcome.internal:
            self._unrecorded(job, outcome)
        elif outcome.state == states.REJECTED and outcome.requeue and not job.acked:
            self.requeue(job)
        elif outcome.held:
            with self._held_lock:
                self._awaiting.append(job)
                full = len(self._awaiting) >= HOLD_MOST
            if full:
                self.release_held()
        else:
            self.ack(job)

    def release_held(self) -> None:
        """Write the results held by this process (``engine.backend.held``), then ack their
        messages; a job whose result was not stored is dead-lettered (``result_not_stored``).
        One release at a time: a job is acked only once the write that took its result is done,
        and a result another release could not store is remembered until its job comes by."""
        if self.held is None:
            return
        with self._release_lock:
            with self._held_lock:
                jobs, self._awaiting = self._awaiting, []
            self._not_stored.update(self.held.write())
            for job in jobs:
                why = self._not_stored.pop(job.id, None)
                if why is None:
                    self.ack(job)
                else:
                    error = BackendStoreError(f"result of {job.id} not stored: {why}")
                    self._unrecorded(job, trace.internal_error(error))

    def _unrecorded(self, job: Job, outcome: Outcome) -> None:
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
        letter = self._letter(job.delivery, outcome.internal or "", detail, job.id, job.name)
        tag = "" if job.acked else job.delivery.tag
        job.acked = True
        # The failure first: whoever sees the dead letter then reads FAILURE, not the SUCCESS the
        # run stored before its callbacks failed to go out.
        self._store_internal_failure(job, outcome)
        self.later(f"dead-letter {job.id}", lambda: self.broker.dead_letter(self.owner, tag, letter))

    def _store_internal_failure(self, job: Job, outcome: Outcome) -> None:
        if outcome.internal != "result_not_stored":
            name = (outcome.exception_repr or "").split("(", 1)[0]  # only the repr crosses a child's pipe
            error = {
                "exc_type": name if name.isidentifier() else "Exception",
                "exc_module": "builtins",
                "exc_message": [f"internal error: {outcome.exception_repr}"],
            }
            m = job.message
            failure = meta(
                job.id, states.FAILURE, error, traceback=outcome.traceback, parent_id=m.parent_id, group_id=m.group
            )
            self.store("store the failure", m, failure, bool(m.ignore_result))

    def requeues_lost(self, job: Job, reason: str, count: int) -> bool:
        """A late-ack job whose process died goes back to its queue until it has been lost
        ``tqctl_delivery_limit`` times; then it is poison (``fail_lost`` dead-letters it)."""
        limit = int(self.app.conf.tqctl_delivery_limit)
        return reason == "worker_lost" and job.acks_late and not job.acked and count < limit

    def requeue_lost(self, job: Job, exc: BaseException) -> None:
        log.warning("%s[%s] lost its process (%s); requeued", job.name, job.id, exc)
        self.requeue(job)

    def fail_lost(self, job: Job, reason: str, exc: BaseException, count: int) -> None:
        """Its process died (``worker_lost``) or overran the hard limit (``time_limit``), and it is
        not requeued: FAILURE stored, and the message acked, or dead-lettered as poison."""
        m = job.message
        failure = meta(job.id, states.FAILURE, encode_exception(exc), parent_id=m.parent_id, group_id=m.group)
        self.store("store the failure", m, failure, bool(m.ignore_result))
        poison = reason == "worker_lost" and count >= int(self.app.conf.tqctl_delivery_limit)
        if poison and not job.acked:
            detail = f"lost its process {count} times: {exc}"
            letter = self._letter(job.delivery, reason, detail, job.id, job.name, job.id)
            tag = job.delivery.tag
            job.acked = True
            self.later(f"dead-letter {job.id}", lambda: self.broker.dead_letter(self.owner, tag, letter))
        else:
            self.ack(job)

    def terminated(self, job: Job) -> None:
        """Killed on request (``revoke --terminate``): REVOKED, and the message acked."""
        revoked = meta(job.id, states.REVOKED, revoked_result("terminated"))
        self.store("store the revocation", job.message, revoked, bool(job.message.ignore_result))
        self.ack(job)

    # -- at shutdown ----------------------------------------------------------------------------
    def hand_back(self, jobs: Sequence[Job]) -> None:
        """Everything unsettled returns to the front of its queue, then the owner retires."""
        if self._unsettled:
            try:
                self.retry_pending()
            except Exception as exc:  # what is still in flight is handed back below
                log.warning("could not finish pending settlements: %r", exc)
        try:
            self.broker.ack(self.owner, self.acker.take())
            early = [(j.delivery.queue_key, j.delivery.raw) for j in jobs if j.acked]
            self.broker.hand_back(early)
            returned = self.broker.requeue_all(self.owner) + len(early)
            self.broker.retire(self.owner)
        except (resp.RedisError, OSError) as exc:
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
        if returned:
            log.warning("handed back %d unfinished message(s)", returned)
