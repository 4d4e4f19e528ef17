"""Observers: what the worker tells the outside world about a task, as hooks at fixed points.

The worker calls each hook at one point of a task's life (``received`` when sorted to the pool,
``started`` just before it runs, ``finished`` with its outcome, ``failed`` when it ended without
one: its process died or overran the hard limit, ``revoked`` when it will not run or was
terminated). Observers never settle a message and never change what runs: an error in one is
logged and the task goes on, which is why events, history, log lines and signals live here and
not in the settlement path. Add one with ``Worker.observers.add``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from engine import forks, signals, states
from engine.request import from_message

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from engine.history import HistoryWriter
    from engine.protocol.task import TaskMessage
    from engine.task import Task
    from engine.trace import Outcome
    from engine.worker.job import Job

log = logging.getLogger("engine.worker")
HOOKS = ("received", "started", "finished", "failed", "revoked")


class Observer:
    """Override the hooks you need; the rest cost nothing (``Observers`` skips them)."""

    def received(self, job: Job) -> None:
        pass

    def started(self, job: Job) -> None:
        pass

    def finished(self, job: Job, outcome: Outcome) -> None:
        pass

    def failed(self, job: Job, exc: BaseException) -> None:
        pass

    def revoked(
        self, message: TaskMessage, task: Task | None, why: str, job: Job | None = None, signum: int | None = None
    ) -> None:
        """``job`` is given when a running task was terminated (``why`` is "terminated")."""


class Observers:
    """The worker's observers, called in the order added; each call is contained."""

    def __init__(self, *observers: Observer) -> None:
        self._all: list[Observer] = []
        self._hooks: dict[str, list[Callable[..., None]]] = {hook: [] for hook in HOOKS}
        for observer in observers:
            self.add(observer)

    def __iter__(self) -> Iterator[Observer]:
        return iter(list(self._all))

    def add(self, observer: Observer) -> None:
        self._all.append(observer)
        for hook in HOOKS:
            if getattr(type(observer), hook) is not getattr(Observer, hook):
                self._hooks[hook].append(getattr(observer, hook))

    def _failed_hook(self, hook: str, call: Callable[..., None], exc: Exception) -> None:
        owner = type(getattr(call, "__self__", call)).__name__
        log.warning("observer %s.%s failed: %r", owner, hook, exc)  # best effort: the task goes on

    def _call(self, hook: str, *args: Any) -> None:
        for call in self._hooks[hook]:
            try:
                call(*args)
            except Exception as exc:
                self._failed_hook(hook, call, exc)

    # The three per-task hooks loop inline (no argument packing): they run for every task.
    def received(self, job: Job) -> None:
        for call in self._hooks["received"]:
            try:
                call(job)
            except Exception as exc:
                self._failed_hook("received", call, exc)

    def started(self, job: Job) -> None:
        for call in self._hooks["started"]:
            try:
                call(job)
            except Exception as exc:
                self._failed_hook("started", call, exc)

    def finished(self, job: Job, outcome: Outcome) -> None:
        for call in self._hooks["finished"]:
            try:
                call(job, outcome)
            except Exception as exc:
                self._failed_hook("finished", call, exc)

    def failed(self, job: Job, exc: BaseException) -> None:
        self._call("failed", job, exc)

    def revoked(
        self, message: TaskMessage, task: Task | None, why: str, job: Job | None = None, signum: int | None = None
    ) -> None:
        self._call("revoked", message, task, why, job, signum)


class TaskEventSink(Protocol):
    """Where ``TaskEvents`` sends: the worker's ``EventDispatcher``, or a wrapper around it (``tqctl.observe``)."""

    def task(self, event_type: str, **fields: Any) -> None: ...


class TaskEvents(Observer):
    """Celery's ``task-*`` events. A task's ``send_events=False`` silences those about its runs."""

    def __init__(self, events: TaskEventSink) -> None:
        self.events = events

    def received(self, job: Job) -> None:
        if not job.task.send_events:
            return
        m = job.message
        h = m.headers
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

    def started(self, job: Job) -> None:
        if job.task.send_events:
            pid = job.worker_pid or forks.pid
            self.events.task("task-started", uuid=job.id, pid=pid, timestamp=job.time_start)

    def finished(self, job: Job, outcome: Outcome) -> None:
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

    def failed(self, job: Job, exc: BaseException) -> None:
        self.events.task("task-failed", uuid=job.id, exception=repr(exc), traceback=None)

    def revoked(
        self, message: TaskMessage, task: Task | None, why: str, job: Job | None = None, signum: int | None = None
    ) -> None:
        terminated = job is not None
        self.events.task(
            "task-revoked", uuid=message.id, terminated=terminated, signum=signum, expired=why == "expired"
        )


class TaskHistory(Observer):
    """One record per finished run in the broker's history list (the console's task screens), and
    one per task revoked, expired or terminated: without it ``tqctl task ID`` knew nothing of a
    revoked task and ``tqctl tasks --state revoked`` was always empty."""

    def __init__(self, history: HistoryWriter, hostname: str) -> None:
        self.history = history
        self.hostname = hostname

    def finished(self, job: Job, outcome: Outcome) -> None:
        m = job.message
        self._write(
            m,
            job.delivery.queue,
            outcome.state,
            job.time_start,
            outcome.runtime,
            outcome.result_repr,
            outcome.exception_repr,
            outcome.traceback,
            raw=job.delivery.raw if outcome.state == states.FAILURE else None,
        )

    def failed(self, job: Job, exc: BaseException) -> None:
        self._write(
            job.message,
            job.delivery.queue,
            states.FAILURE,
            job.time_start,
            None,
            None,
            repr(exc),
            None,
            raw=job.delivery.raw,
        )

    def revoked(
        self, message: TaskMessage, task: Task | None, why: str, job: Job | None = None, signum: int | None = None
    ) -> None:
        """REVOKED, with the reason as Celery stores it (``TaskRevokedError('expired')``) and the
        ``terminated``/``expired``/``signum`` fields of Celery's ``task-revoked`` event."""
        started = job.time_start if job is not None else None
        runtime = round(time.time() - started, 6) if started else None
        queue = job.delivery.queue if job is not None else _queue_of(message)
        extra = {
            "args": message.headers.get("argsrepr") or repr(message.args),  # (no run reported them)
            "kwargs": message.headers.get("kwargsrepr") or repr(message.kwargs),
            "terminated": job is not None,
            "expired": why == "expired",
            "signum": signum,
        }
        exception = f"TaskRevokedError({why!r})"
        self._write(message, queue, states.REVOKED, started, runtime, None, exception, None, extra=extra)

    def _write(
        self,
        m: TaskMessage,
        queue: str | None,
        state: str,
        started: float | None,
        runtime: float | None,
        result: str | None,
        exception: str | None,
        traceback: str | None,
        raw: bytes | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """One record, built in one literal (this runs for every task the worker finishes); ``extra``
        adds or overrides fields (a revoke's)."""
        headers = m.headers
        record = {
            "id": m.id,
            "name": m.name,
            "state": state,
            "args": headers.get("argsrepr"),
            "kwargs": headers.get("kwargsrepr"),
            "result": result,
            "exception": exception,
            "traceback": traceback,
            "worker": self.hostname,
            "queue": queue,
            "retries": m.retries,
            "root_id": m.root_id,
            "parent_id": m.parent_id,
            "retry_of": headers.get("retry_of"),
            "started": started,
            "runtime": runtime,  # ("finished" is stamped by the writer)
        }
        if extra:
            record.update(extra)
        self.history.record(record, raw)


def _queue_of(message: TaskMessage) -> str | None:
    """A message's queue from its routing key (a task skipped before it ran has no job, and so no
    delivery), without the delay prefix a task that came out of RabbitMQ's delay levels has."""
    from engine.broker.amqp_delay import undelayed  # (py-amqp's import only for a revoked task)

    key = message.delivery_info.get("routing_key")
    return undelayed(key) if isinstance(key, str) else None


class TaskLog(Observer):
    """The worker's log lines about tasks (a failure's traceback is logged by ``engine.trace``)."""

    def received(self, job: Job) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info("Task %s[%s] received", job.name, job.id)

    def finished(self, job: Job, outcome: Outcome) -> None:
        # A retry was logged where it ran, in Celery's words ("Task name[id] retry: Retry in 2s:
        # ValueError(...)", engine.trace); a line here would give the run time as if the countdown.
        if outcome.state not in (states.FAILURE, states.RETRY) and log.isEnabledFor(logging.INFO):
            verb = "succeeded" if outcome.state == states.SUCCESS else outcome.state.lower()
            result = outcome.result_repr or outcome.exception_repr
            log.info("Task %s[%s] %s in %.4fs: %s", job.name, job.id, verb, outcome.runtime, result)

    def failed(self, job: Job, exc: BaseException) -> None:
        log.error("%s[%s] failed: %r", job.name, job.id, exc)

    def revoked(
        self, message: TaskMessage, task: Task | None, why: str, job: Job | None = None, signum: int | None = None
    ) -> None:
        if job is not None:
            log.warning("Task %s[%s] terminated (pid %s)", message.name, message.id, job.worker_pid)
        else:
            log.info("Task %s[%s] %s", message.name, message.id, why)


class TaskSignals(Observer):
    """``task_received`` and ``task_revoked`` (the other task signals fire where the task runs)."""

    def __init__(self, hostname: str, sender: object) -> None:
        self.hostname = hostname
        self.sender = sender  # Celery sends ``task_received`` from the consumer

    def received(self, job: Job) -> None:
        if signals.task_received.receivers:
            signals.task_received.send(sender=self.sender, request=job.request(self.hostname))

    def revoked(
        self, message: TaskMessage, task: Task | None, why: str, job: Job | None = None, signum: int | None = None
    ) -> None:
        if not signals.task_revoked.receivers or task is None:
            return
        request = job.request(self.hostname) if job is not None else from_message(message, self.hostname)
        signals.task_revoked.send(
            sender=task, request=request, terminated=job is not None, signum=signum, expired=why == "expired"
        )
