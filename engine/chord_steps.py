"""The worker's side of the canvas: what happens after a task that belongs to a workflow ends.

As Celery 5.7's worker does it, for messages from either client: on success the callbacks go
out (several at once as one group), then the next chain step with the rest of the chain; a
chord header member counts itself in and the last one starts the body. On failure every step
chained after the task is marked failed too, including the bodies of chords further on, and a
chord whose header failed stores a ``ChordError`` on its body and calls the body's errbacks.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from engine import states
from engine.canvas import Signature, maybe_signature
from engine.exceptions import ChordError
from engine.protocol.results import decode_exception, encode_exception, meta
from engine.protocol.task import new_id
from engine.workflows import Chord, Group

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from engine.app import App
    from engine.group_result import GroupResult
    from engine.request import Request


def send_callbacks(app: App, request: Request, value: Any) -> None:
    """``link`` callbacks, then the next chain step (Celery's ``_dispatch_callbacks_and_chain``)."""
    family: dict[str, Any] = {"parent_id": request.id, "root_id": request.root_id}
    callbacks = [s for s in (maybe_signature(c, app) for c in request.callbacks or ()) if s is not None]
    if len(callbacks) > 1:
        for sig in callbacks:
            if isinstance(sig, Group):
                sig.apply_async((value,), **family)
        plain = [sig for sig in callbacks if not isinstance(sig, Group)]
        if plain:
            Group(plain, app=app).apply_async((value,), **family)
    elif callbacks:
        callbacks[0].apply_async((value,), **family)
    if request.chain:
        step = maybe_signature(request.chain[-1], app)
        if step is not None:
            step.apply_async((value,), chain=list(request.chain[:-1]), **family)


def chord_part(app: App, request: Request, state: str, result: Any) -> None:
    """Count a finished chord header member; the one that completes the set starts the body."""
    if not request.chord or not request.group or request.is_eager:
        return
    _part_done(app, request.group, request.id or "", request.group_index or 0, request.chord, state, result)


def _part_done(
    app: App, group_id: str, task_id: str, index: int, chord: dict[str, Any], state: str, result: Any
) -> None:
    join = app.chord_join()
    got = join.part_done(group_id, task_id, index, state, result)
    if got is None:
        return
    token, parts = got
    body = maybe_signature(chord, app)
    failed = next(((tid, res) for tid, st, res in parts if st in states.PROPAGATE_STATES), None)
    if body is not None:
        if failed is None:
            try:
                values = _header_values(app, group_id, parts)
            except Exception as error:  # noqa: BLE001 - as Celery: the body fails with a join error
                log.exception("Chord %r raised: %r", group_id, error)
                fail_body(app, body, ChordError(f"Join error: {error!r}"))
            else:
                body.apply_async((values,))
        else:
            cause = decode_exception(failed[1])
            exc = ChordError(f"Dependency {failed[0]} raised {cause!r}")
            exc.__cause__ = cause
            fail_body(app, body, exc)
    join.finish(group_id, token, keep_parts=failed is not None)


def _header_values(app: App, group_id: str, parts: list[tuple[str, str, Any]]) -> list[Any]:
    """What the body is called with. A header the client saved as a group result (it has a
    nested group, e.g. a chain ending in a group) gives its nested shape, read from each
    member's result, as Celery's Redis backend does; any other header, the parts in order."""
    from engine.group_result import GroupResult

    if app.backend is None:
        return [res for _, _, res in parts]
    saved = GroupResult.restore(group_id, app=app)
    if saved is None:
        return [res for _, _, res in parts]
    timeout = app.conf.get("result_chord_join_timeout") or 3.0
    return saved.get(timeout=float(timeout), propagate=True, disable_sync_subtasks=False)  # the last part: all ready


def fail_body(app: App, body: Signature, exc: BaseException) -> None:
    """A chord body that will never run: it fails (errbacks called, failure stored), and so do
    the steps chained after it (Celery's ``chord_error_from_stack``). A group body fails member
    by member with the header's own error, so nothing waits on a member that will never run."""
    if isinstance(body, Group):
        _fail_group_body(app, body, exc.__cause__ or exc)
    else:
        body_id = body.options.setdefault("task_id", new_id())
        sent = _call_errbacks(app, body, body_id, body.options.get("link_error"), exc)
        # As Celery: the body's stored failure lists the errbacks sent for it among its children.
        children = [sent.as_tuple()] if sent is not None else None
        _store_failure(app, body_id, exc, body.options.get("group_id"), children)
    fail_chain(app, body.options.get("chain"), exc)


def _fail_group_body(app: App, body: Group, exc: BaseException) -> None:
    group_errbacks = _as_list(body.options.get("link_error"))
    result = body.freeze()
    own = dict(_result_errbacks(member) for member in body.tasks)
    for member, member_result in zip(body.tasks, result.results, strict=False):
        errbacks: list[Any] = []
        for errback in (*own.get(member_result.id, ()), *group_errbacks):
            if errback not in errbacks:
                errbacks.append(errback)
        _call_errbacks(app, member, member_result.id, errbacks, exc)
        _store_failure(app, member_result.id, exc, result.id)
    _store_failure(app, result.id, exc, None)


def _result_errbacks(sig: Signature) -> tuple[str | None, list[Any]]:
    """The id a group member's result has and the errbacks linked to it (Celery's helper of the
    same name): a chord's result is its body's, where its errbacks live; a group's gathers its
    members'. Without this, a chord inside a group body never hears its outer header failed."""
    errbacks: list[Any] = []
    while isinstance(sig, Chord) and sig.body is not None:
        errbacks.extend(_as_list(sig.options.get("link_error")))
        sig = sig.body
    errbacks.extend(_as_list(sig.options.get("link_error")))
    if isinstance(sig, Group):
        for task in sig.tasks:
            errbacks.extend(_result_errbacks(task)[1])
    return sig.options.get("task_id"), errbacks


def _as_list(value: Any) -> list[Any]:
    if not value:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _store_failure(
    app: App, task_id: str, exc: BaseException, group_id: str | None, children: list[Any] | None = None
) -> None:
    if app.backend is not None:
        failure = meta(task_id, states.FAILURE, encode_exception(exc), group_id=group_id, children=children)
        app.backend.store(task_id, failure)


def _call_errbacks(app: App, sig: Signature, task_id: str, errbacks: Any, exc: BaseException) -> GroupResult | None:
    """Errbacks of a task that never ran: they get a stand-in request, as in Celery."""
    from engine.request import Request

    request = Request(
        id=task_id, name=sig.name, args=sig["args"], kwargs=sig["kwargs"], root_id=task_id, errbacks=_as_list(errbacks)
    )
    return call_errbacks(app, request, exc, None)


def _new_style(task: Any, errback: Signature) -> bool:
    """Celery's test: more than one positional parameter left once the errback's own args are bound
    means ``(request, exc, traceback)``; otherwise it is sent the failed task's id."""
    try:
        params = list(inspect.signature(task.run).parameters.values())  # bound: no self
    except (AttributeError, TypeError, ValueError):
        return False
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not errback.immutable:
        bound = set(errback["kwargs"])
        positional = [p for p in positional[len(errback["args"]) :] if p.name not in bound]
    return len(positional) > 1


def call_errbacks(app: App, request: Any, exc: BaseException, traceback: str | None) -> GroupResult | None:
    """A failed task's errbacks, as Celery calls them: new-style ones here, in the worker, with
    ``(request, exc, traceback)`` plus their own args (an error in one is logged, never fatal);
    old-style ones sent together as one group with the task's id (its result is returned)."""
    old_style = []
    for errback in request.errbacks or ():
        sig = maybe_signature(errback, app)
        if sig is None:
            continue
        local = app.tasks.get(sig.name)
        if local is not None and _new_style(local, sig):
            try:
                sig(request, exc, traceback)
            except Exception:  # noqa: BLE001 - Celery logs it and goes on
                log.exception("Errback %r raised an exception", sig.name)
        else:
            old_style.append(sig)
    if not old_style:
        return None
    return Group(old_style, app=app).apply_async(
        (request.id,), parent_id=request.id, root_id=request.root_id or request.id
    )


def fail_chain(app: App, chain: list[Any] | None, exc: BaseException) -> None:
    """Mark every step chained after a failed task as failed (Celery's ``_fail_chain``)."""
    encoded = encode_exception(exc)
    steps: deque[Any] = deque(chain or ())
    while steps:
        step = steps.popleft()
        if not isinstance(step, dict):
            continue
        opts = step.get("options") or {}
        task_id, group_id = opts.get("task_id"), opts.get("group_id")
        backend = app.backend
        already_failed = bool(
            "chord" in opts
            and task_id
            and backend is not None
            and (backend.get_meta(task_id) or {}).get("status") in states.PROPAGATE_STATES
        )
        if backend is not None and task_id:
            backend.store(task_id, meta(task_id, states.FAILURE, encoded, group_id=group_id))
        if opts.get("chord") and group_id and task_id and not already_failed:
            _part_done(
                app, group_id, task_id, int(opts.get("group_index") or 0), opts["chord"], states.FAILURE, encoded
            )
        if step.get("subtask_type") == "chord":
            body = (step.get("kwargs") or {}).get("body")
            if body is not None:
                steps.append(body)
