"""Run one task for one request and record what happened.

Shared by every pool and by eager mode, so retries, failures, results and callbacks behave
the same wherever a task runs. It never touches the broker's ownership of the message: the
worker acks or requeues based on the returned ``Outcome``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine import chord_steps, states
from engine.exceptions import EncodeError, Ignore, Reject, Retry
from engine.protocol.results import encode_exception, format_traceback, meta
from engine.protocol.task import safe_repr
from engine.request import Request
from engine.task import backoff_delay

if TYPE_CHECKING:
    from engine.app import App
    from engine.task import Task


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
    retry_when: float | None = None


def run(app: App, task: Task, request: Request, *, store: bool = True) -> Outcome:
    started = time.perf_counter()
    task.push_request(request)
    app.current_requests.push(request)
    try:
        if store and not request.ignore_result and task.opt("track_started", "task_track_started"):
            _store(app, request, states.STARTED, {"pid": os.getpid(), "hostname": request.hostname})
        value = task.run(*request.args, **request.kwargs)
    except Retry as retry:
        return _retried(app, request, retry, started, store)
    except Reject as reject:
        return _rejected(app, request, reject, started, store)
    except Ignore as ignore:  # replaced (Task.replace): the replacement stores the result
        return Outcome(states.IGNORED, time.perf_counter() - started, exception_repr=repr(ignore))
    except Exception as exc:
        retried = _autoretry(task, exc)
        if isinstance(retried, Retry):
            return _retried(app, request, retried, started, store)
        return _failed(app, task, request, retried or exc, started, store)
    finally:
        app.current_requests.pop()
        task.pop_request()
    runtime = time.perf_counter() - started
    if store and not request.ignore_result:
        try:
            _store(app, request, states.SUCCESS, value)
        except (TypeError, ValueError, RecursionError) as exc:  # the value, not the backend, is at fault
            error = EncodeError(f"cannot store the result of {task.name}: {exc}")
            return _failed(app, task, request, error, started, store)
    _send_callbacks(app, request, value)
    _chord_part(app, request, states.SUCCESS, value)
    return Outcome(states.SUCCESS, runtime, result_repr=safe_repr(value), value=value)


def _autoretry(task: Task, exc: Exception) -> Retry | Exception | None:
    """``Retry`` if re-sent; else the error the task ends with (past max_retries, ``exc`` itself)."""
    if not task.autoretry_for or not isinstance(exc, task.autoretry_for):
        return None
    options = dict(task.retry_kwargs or {})
    if task.retry_backoff and "countdown" not in options:
        factor = 1.0 if task.retry_backoff is True else float(task.retry_backoff)
        options["countdown"] = backoff_delay(
            task.request.retries, factor, task.retry_backoff_max, task.retry_jitter
        )
    try:
        task.retry(exc=exc, **options)
    except Retry as retry:
        return retry
    except Exception as error:  # retries used up: retry() re-raised exc, as Celery's does
        return error
    return None  # pragma: no cover - retry() always raises with throw=True


def _retried(app: App, request: Request, retry: Retry, started: float, store: bool) -> Outcome:
    reason = retry.exc if retry.exc is not None else retry
    trace = format_traceback(retry)
    if store and not request.ignore_result:  # as Celery: the exc given to retry() (or null), Retry's traceback
        _store(app, request, states.RETRY, encode_exception(retry.exc) if retry.exc is not None else None,
               traceback=trace)
    value = retry.result.result if retry.result is not None else None
    state = retry.result.state if retry.result is not None else states.RETRY
    final_trace = trace if retry.result is None else retry.result.traceback  # eager: the re-run's
    return Outcome(state, time.perf_counter() - started, exception_repr=repr(reason),
                   traceback=final_trace, value=value, retry_when=retry.when)


def _rejected(app: App, request: Request, reject: Reject, started: float, store: bool) -> Outcome:
    if store and not reject.requeue and not request.ignore_result:
        _store(app, request, states.FAILURE, encode_exception(reject))
    return Outcome(states.REJECTED, time.perf_counter() - started,
                   exception_repr=repr(reject), requeue=reject.requeue)


def _failed(app: App, task: Task, request: Request, exc: Exception, started: float,
            store: bool) -> Outcome:
    trace = format_traceback(exc)
    if store and not request.ignore_result:
        _store(app, request, states.FAILURE, encode_exception(exc), traceback=trace)
    _send_errbacks(app, request, exc, trace)
    _chord_part(app, request, states.FAILURE, encode_exception(exc))
    if not request.is_eager:
        chord_steps.fail_chain(app, request.chain, exc)
    return Outcome(states.FAILURE, time.perf_counter() - started, exception_repr=repr(exc),
                   traceback=trace, value=exc)


def _store(app: App, request: Request, state: str, result: Any,
           traceback: str | None = None) -> None:
    backend = app.backend
    if backend is None or request.id is None:
        return
    backend.store(request.id, meta(request.id, state, result, traceback=traceback,
                                   parent_id=request.parent_id, group_id=request.group))


def _send_callbacks(app: App, request: Request, value: Any) -> None:
    chord_steps.send_callbacks(app, request, value)


def _send_errbacks(app: App, request: Request, exc: Exception, trace: str) -> None:
    chord_steps.call_errbacks(app, request, exc, trace)


def _chord_part(app: App, request: Request, state: str, result: Any) -> None:
    chord_steps.chord_part(app, request, state, result)
