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

from engine import states
from engine.backend.retry import store_patiently
from engine.canvas import maybe_signature
from engine.exceptions import BackendStoreError, ChordError, EncodeError, Reject, Retry
from engine.protocol.results import decode_exception, encode_exception, format_traceback, meta
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
    internal: str | None = None  # set when the outcome could not be recorded: the dead-letter reason


def run(app: App, task: Task, request: Request, *, store: bool = True) -> Outcome:
    """Run the task and record its outcome. An error outside the body (its result not stored, a
    callback that cannot be sent) never escapes to the pool: it becomes an ``internal`` outcome the
    worker dead-letters with the reason (Celery's trace has the same net, ``task_internal_error``)."""
    started = time.perf_counter()
    try:
        return _run(app, task, request, store, started)
    except Exception as exc:
        if request.is_eager:
            raise
        return internal_error(exc, time.perf_counter() - started)


def internal_error(exc: BaseException, runtime: float = 0.0) -> Outcome:
    """The outcome of a run whose result, callbacks or bookkeeping failed after (or before) the body."""
    reason = "result_not_stored" if isinstance(exc, BackendStoreError) else "internal_error"
    return Outcome(states.FAILURE, runtime, exception_repr=repr(exc), traceback=format_traceback(exc),
                   internal=reason)


def _run(app: App, task: Task, request: Request, store: bool, started: float) -> Outcome:
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
    return Outcome(states.FAILURE, time.perf_counter() - started, exception_repr=repr(exc),
                   traceback=trace, value=exc)


def _store(app: App, request: Request, state: str, result: Any,
           traceback: str | None = None) -> None:
    backend = app.backend
    if backend is None or request.id is None:
        return
    document = meta(request.id, state, result, traceback=traceback, parent_id=request.parent_id,
                    group_id=request.group)
    store_patiently(backend, request.id, document, float(app.conf.tqctl_result_retry_timeout))


def _send_callbacks(app: App, request: Request, value: Any) -> None:
    family = {"parent_id": request.id, "root_id": request.root_id}
    for callback in request.callbacks or ():
        sig = maybe_signature(callback, app)
        if sig is not None:
            sig.apply_async((value,), **family)
    if request.chain:
        chain = list(request.chain)
        step = maybe_signature(chain.pop(), app)
        if step is not None:
            step.apply_async((value,), chain=chain or None, **family)


def _send_errbacks(app: App, request: Request, exc: Exception, trace: str) -> None:
    for errback in request.errbacks or ():
        sig = maybe_signature(errback, app)
        if sig is None:
            continue
        local = app.tasks.get(sig.name)
        if local is not None and _takes_request(local):
            local(request, exc, trace)
        else:
            sig.apply_async((request.id,), parent_id=request.id, root_id=request.root_id)


def _takes_request(task: Task) -> bool:
    code = getattr(task.fun, "__code__", None)
    if code is None:
        return False
    positional = code.co_argcount - (1 if task.bind else 0)
    return positional >= 3


def _chord_part(app: App, request: Request, state: str, result: Any) -> None:
    """Count a finished chord header; the one that completes the set starts the body."""
    if not request.chord or not request.group or request.is_eager:
        return
    join = app.chord_join()
    got = join.part_done(request.group, request.id or "", request.group_index or 0, state, result)
    if got is None:
        return
    token, parts = got
    body = maybe_signature(request.chord, app)
    if body is None:
        return
    failed = next(((tid, res) for tid, st, res in parts if st != states.SUCCESS), None)
    if failed is None:
        body.apply_async(([res for _, _, res in parts],))
    else:
        _fail_body(app, body, failed[0], failed[1])
    join.finish(request.group, token)


def _fail_body(app: App, body: Any, task_id: str, result: Any) -> None:
    body_id = body.options.get("task_id")
    exc = ChordError(f"Dependency {task_id} raised {decode_exception(result)!r}")
    if app.backend is not None and body_id:
        app.backend.store(body_id, meta(body_id, states.FAILURE, encode_exception(exc),
                                        group_id=body.options.get("group_id")))
    for errback in body.options.get("link_error") or ():
        sig = maybe_signature(errback, app)
        if sig is not None:
            sig.apply_async((body_id,))
