"""Run one task for one request and record what happened.

Shared by every pool and by eager mode, so retries, failures, results and callbacks behave
the same wherever a task runs. It never touches the broker's ownership of the message: the
worker acks or requeues based on the returned ``Outcome``.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import os
import pickle
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine import chord_steps, log, signals, states, trail
from engine.backend.retry import store_patiently
from engine.exceptions import BackendStoreError, EncodeError, Ignore, Reject, Retry, one_line
from engine.protocol.results import encode_exception, format_traceback, meta
from engine.protocol.task import safe_repr
from engine.request import Request
from engine.task import Task, backoff_delay

if TYPE_CHECKING:
    from engine.app import App
    from engine.backend.held import HeldResults

log_trace = logging.getLogger("celery.app.trace")  # Celery's logger name: users' configs filter on it


@dataclass(slots=True)
class Outcome:
    """What a run produced, small enough to pass from a pool child to the worker."""

    state: str
    runtime: float
    result_repr: str | None = None
    exception_repr: str | None = None
    traceback: str | None = None
    requeue: bool = False
    value: Any = None
    retry_when: float | dt.datetime | None = None  # retry(eta=...) gives a datetime
    internal: str | None = None  # the outcome could not be recorded: the dead-letter reason (see internal_error)
    held: bool = False  # the result is held to be written later (``engine.backend.held``): ack only after


class ExceptionInfo:
    """What ``on_failure``/``on_retry`` and the signals get as ``einfo`` (billiard's shape in Celery)."""

    def __init__(self, exc: BaseException, traceback: str | None = None) -> None:
        self.exception = exc
        self.type = type(exc)
        self.tb = exc.__traceback__
        self.traceback = traceback if traceback is not None else format_traceback(exc)
        self.internal = False

    def __str__(self) -> str:
        return self.traceback

    def __repr__(self) -> str:
        return f"<ExceptionInfo: {self.exception!r}>"


def run(app: App, task: Task, request: Request, *, store: bool = True) -> Outcome:
    """One run with Celery's order: ``task_prerun``, ``before_start``, the task, the outcome's hooks and
    signals, ``after_return``, ``task_postrun``. An error in the engine or in a hook ends the run
    ``FAILURE`` with ``task_internal_error`` sent; it never escapes to the pool (except in eager mode)."""
    started = time.perf_counter()
    task.push_request(request)
    app.current_requests.push(request)
    token = log.enter(task, request)
    outcome: Outcome | None = None
    try:
        if signals.task_prerun.receivers:
            signals.task_prerun.send(
                sender=task, task_id=request.id, task=task, args=request.args, kwargs=request.kwargs
            )
        try:
            outcome = _run(app, task, request, started, store)
        finally:
            if signals.task_postrun.receivers:
                signals.task_postrun.send(
                    sender=task,
                    task_id=request.id,
                    task=task,
                    args=request.args,
                    kwargs=request.kwargs,
                    retval=outcome.value if outcome else None,
                    state=outcome.state if outcome else None,
                )
    except Exception as exc:
        if request.is_eager:
            raise
        return _internal_error(task, request, exc, started)
    finally:
        log.leave(token)
        app.current_requests.pop()
        task.pop_request()
    return outcome


# Base classes never taken as the stand-in for an exception that does not pickle (Celery's rule).
_TOO_GENERAL = (Exception, BaseException, object)


def _round_trips(exc: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any failure to rebuild it is the answer
        return False
    return True


def storable_exception(exc: BaseException) -> dict[str, Any]:
    """A task's exception as the worker stores it, as Celery's worker does.

    An exception whose class cannot be rebuilt from its own args (its ``__init__`` wants more,
    say) could not be raised again by a client: Celery stores the nearest base class that can
    be, else an ``UnpickleableExceptionWrapper`` naming the class, its args and its repr. Clients
    of either kind then get an exception they can raise and read."""
    if _round_trips(exc):
        return encode_exception(exc)
    for base in type(exc).__mro__[1:]:
        if base in _TOO_GENERAL or not issubclass(base, BaseException):
            continue
        try:
            nearest = base(*exc.args)
        except Exception:  # noqa: BLE001, S112 - that base cannot stand in; try the next
            continue
        if _round_trips(nearest):
            return encode_exception(nearest)
    return {
        "exc_type": "UnpickleableExceptionWrapper",
        "exc_message": [
            type(exc).__module__,
            type(exc).__name__,
            encode_exception(exc)["exc_message"],
            safe_repr(exc),
        ],
        "exc_module": "celery.utils.serialization",
    }


def _task_id(request: Request) -> str:
    """The running task's id, for the hooks: every request the worker or eager mode runs has one."""
    if request.id is None:
        raise ValueError("a task request without an id cannot run")
    return request.id


def _run(app: App, task: Task, request: Request, started: float, store: bool) -> Outcome:
    if store and not request.ignore_result and task.opt("track_started", "task_track_started"):
        _store(app, request, states.STARTED, {"pid": os.getpid(), "hostname": request.hostname})
    call = task.__call__ if type(task).__call__ is not Task.__call__ else task.run  # a base's __call__ wraps run
    try:
        task.before_start(_task_id(request), request.args, request.kwargs)
        value = call(*request.args, **request.kwargs)
        if inspect.iscoroutine(value):  # an ``async def`` task: run it to completion (engine.asyncrun)
            from engine import asyncrun  # asyncio is loaded by the first such task, not by every worker

            value = asyncrun.resolve(value)
    except Retry as retry:
        return _retried(app, task, request, retry, started, store)
    except Reject as reject:
        return _rejected(app, request, reject, started, store)
    except Ignore as ignore:  # replaced (Task.replace): the replacement stores the result
        return Outcome(states.IGNORED, time.perf_counter() - started, exception_repr=repr(ignore))
    except Exception as exc:
        retried = _autoretry(task, exc)
        if isinstance(retried, Retry):
            return _retried(app, task, request, retried, started, store)
        return _failed(app, task, request, retried or exc, started, store)
    runtime = time.perf_counter() - started
    held = False
    if store and not request.ignore_result:
        try:
            held = _store(app, request, states.SUCCESS, value, holder=_holder(app, task, request))
        except (TypeError, ValueError, RecursionError) as exc:  # the value, not the backend, is at fault
            error = EncodeError(f"cannot store the result of {task.name}: {exc}")
            return _failed(app, task, request, error, started, store)
    _send_callbacks(app, request, value)
    _chord_part(app, request, states.SUCCESS, value)
    task.on_success(value, _task_id(request), request.args, request.kwargs)
    if signals.task_success.receivers:
        signals.task_success.send(sender=task, result=value, runtime=runtime)  # Celery 5.7 sends runtime too
    task.after_return(states.SUCCESS, value, _task_id(request), request.args, request.kwargs, None)
    return Outcome(states.SUCCESS, runtime, result_repr=_repr(task, value), value=value, held=held)


def _holder(app: App, task: Task, request: Request) -> HeldResults | None:
    """Where this SUCCESS may be written behind (``engine.backend.held``): only in a work-sharing
    child that holds results, and only when nothing reads it before it is written."""
    holder: HeldResults | None = getattr(app.backend, "held", None)
    cls = type(task)
    may = (
        holder is not None
        and not (request.callbacks or request.chain or request.chord)
        and cls.on_success is Task.on_success
        and cls.after_return is Task.after_return
        and not signals.task_success.receivers
        and bool(task.opt("acks_late", "task_acks_late"))
    )
    return holder if may else None


def _repr(task: Task, value: Any) -> str:
    limit = task.resultrepr_maxsize
    if limit == 1024:
        return safe_repr(value)
    text = repr(value)
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def _internal_error(task: Task, request: Request, exc: Exception, started: float) -> Outcome:
    einfo = ExceptionInfo(exc)
    log_trace.critical("Task %s[%s] INTERNAL ERROR: %r\n%s", task.name, request.id, exc, einfo.traceback)
    signals.task_internal_error.send(
        sender=task,
        task_id=request.id,
        args=request.args,
        kwargs=request.kwargs,
        request=request,
        exception=exc,
        traceback=exc.__traceback__,
        einfo=einfo,
    )
    return internal_error(exc, time.perf_counter() - started, einfo.traceback)


def _with_text(exc: BaseException) -> str:
    """``repr(exc)``, unless it leaves the message out: redis-py's errors repr as their kind
    (``server:ResponseError``), which hid e.g. an ACL refusal's "no permissions to run the 'expire'
    command" from the stored error and the log; then ``ResponseError('<message>')``."""
    text, message = repr(exc), str(exc)
    if not message or message in text or repr(message) in text:
        return text
    return f"{type(exc).__name__}({one_line(exc)!r})"


def internal_error(exc: BaseException, runtime: float = 0.0, traceback: str | None = None) -> Outcome:
    """An outcome that could not be recorded (result store unreachable past its retries, callbacks that
    cannot be sent, a hook that raised): the worker dead-letters the message with ``internal`` as the
    reason, never acks it as if all went well. Pools use it too for errors outside ``run``."""
    reason = "result_not_stored" if isinstance(exc, BackendStoreError) else "internal_error"
    return Outcome(
        states.FAILURE,
        runtime,
        exception_repr=_with_text(exc),
        traceback=traceback if traceback is not None else format_traceback(exc),
        internal=reason,
    )


def _autoretry(task: Task, exc: Exception) -> Retry | Exception | None:
    """``Retry`` if re-sent; else the error the task ends with (past max_retries, ``exc`` itself)."""
    if not task.autoretry_for or not isinstance(exc, task.autoretry_for):
        return None
    if task.dont_autoretry_for and isinstance(exc, task.dont_autoretry_for):
        return None
    options = dict(task.retry_kwargs or {})
    if task.retry_backoff and "countdown" not in options:
        factor = 1.0 if task.retry_backoff is True else float(task.retry_backoff)
        options["countdown"] = backoff_delay(task.request.retries, factor, task.retry_backoff_max, task.retry_jitter)
    try:
        task.retry(exc=exc, **options)
    except Retry as retry:
        return retry
    except Exception as error:  # retries used up: retry() re-raised exc, as Celery's does
        return error
    return None  # pragma: no cover - retry() always raises with throw=True


def _retried(app: App, task: Task, request: Request, retry: Retry, started: float, store: bool) -> Outcome:
    trace = format_traceback(retry)
    if store and not request.ignore_result:  # as Celery: the exc given to retry() (or null), Retry's traceback
        _store(
            app,
            request,
            states.RETRY,
            storable_exception(retry.exc) if retry.exc is not None else None,
            traceback=trace,
        )
    einfo = ExceptionInfo(retry, trace)
    task.on_retry(retry.exc, _task_id(request), request.args, request.kwargs, einfo)
    signals.task_retry.send(sender=task, request=request, reason=retry, einfo=einfo)
    log_trace.info("Task %s[%s] retry: %s", task.name, request.id, retry)
    value = retry.result.result if retry.result is not None else None
    state = retry.result.state if retry.result is not None else states.RETRY
    final_trace = trace if retry.result is None else retry.result.traceback  # eager: the re-run's
    return Outcome(
        state,
        time.perf_counter() - started,
        exception_repr=repr(retry.exc),  # task-retried's ``exception``: Celery's is "None" when none was given
        traceback=final_trace,
        value=value,
        retry_when=retry.when,
    )


def _rejected(app: App, request: Request, reject: Reject, started: float, store: bool) -> Outcome:
    if store and not reject.requeue and not request.ignore_result:
        _store(app, request, states.FAILURE, encode_exception(reject))
    return Outcome(states.REJECTED, time.perf_counter() - started, exception_repr=repr(reject), requeue=reject.requeue)


def _failed(app: App, task: Task, request: Request, exc: Exception, started: float, store: bool) -> Outcome:
    trace = format_traceback(exc)
    keep_error = not request.ignore_result or bool(task.opt("store_errors_even_if_ignored"))
    if store and keep_error:
        _store(app, request, states.FAILURE, storable_exception(exc), traceback=trace)
    _send_errbacks(app, request, exc, trace)
    _chord_part(app, request, states.FAILURE, storable_exception(exc))
    if not request.is_eager:
        chord_steps.fail_chain(app, request.chain, exc)
    einfo = ExceptionInfo(exc, trace)
    task.on_failure(exc, _task_id(request), request.args, request.kwargs, einfo)
    signals.task_failure.send(
        sender=task,
        task_id=request.id,
        exception=exc,
        args=request.args,
        kwargs=request.kwargs,
        traceback=exc.__traceback__,
        einfo=einfo,
    )
    _log_failure(task, request, exc, trace)
    # Celery hands after_return None for einfo in every state (on_failure has the ExceptionInfo).
    task.after_return(states.FAILURE, exc, _task_id(request), request.args, request.kwargs, None)
    return Outcome(states.FAILURE, time.perf_counter() - started, exception_repr=repr(exc), traceback=trace, value=exc)


def _log_failure(task: Task, request: Request, exc: Exception, trace: str) -> None:
    """Celery's lines: an exception listed in ``throws`` is expected (INFO, no traceback)."""
    if request.is_eager:
        return
    if task.throws and isinstance(exc, tuple(task.throws)):
        log_trace.info("Task %s[%s] raised expected: %r", task.name, request.id, exc)
    else:
        log_trace.error("Task %s[%s] raised unexpected: %r\n%s", task.name, request.id, exc, trace.rstrip())


def _store(
    app: App,
    request: Request,
    state: str,
    result: Any,
    traceback: str | None = None,
    holder: HeldResults | None = None,
) -> bool:
    """Store the outcome, or hand it to ``holder`` to be written later (True; see ``_holder``)."""
    backend = app.backend
    if backend is None or request.id is None:
        return False
    extended = _extended(request) if app.conf.get("result_extended") else None
    document = meta(
        request.id,
        state,
        result,
        traceback=traceback,
        parent_id=request.parent_id,
        group_id=request.group,
        extended=extended,
        children=trail.stored(request) if state in states.READY_STATES else None,
    )
    if holder is not None:
        holder.hold(request.id, document)
        return True
    store_patiently(backend, request.id, document, float(app.conf.tqctl_result_retry_timeout))
    return False


def _extended(request: Request) -> dict[str, Any]:
    """``result_extended``: what Celery adds to the stored result about the request."""
    fields: dict[str, Any] = {
        "name": request.name,
        "args": request.args,
        "kwargs": request.kwargs,
        "worker": request.hostname,
        "retries": request.retries,
        "queue": (request.delivery_info or {}).get("routing_key"),
    }
    stamps = request.stamps
    if stamps:
        fields["stamped_headers"] = request.stamped_headers
        fields.update(stamps)
    return fields


def _send_callbacks(app: App, request: Request, value: Any) -> None:
    chord_steps.send_callbacks(app, request, value)


def _send_errbacks(app: App, request: Request, exc: Exception, trace: str) -> None:
    chord_steps.call_errbacks(app, request, exc, trace)


def _chord_part(app: App, request: Request, state: str, result: Any) -> None:
    chord_steps.chord_part(app, request, state, result)
