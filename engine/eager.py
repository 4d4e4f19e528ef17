"""Eager mode: ``delay()`` runs the task inline, for users' own unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine import states, trace
from engine.protocol.task import new_id
from engine.request import Request
from engine.result import EagerResult

if TYPE_CHECKING:
    from engine.canvas import Signature
    from engine.group_result import GroupResult
    from engine.task import Task


def run_eagerly(task: Task, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]) -> EagerResult:
    task_id = options.get("task_id") or new_id()
    store = bool(task.opt("store_eager_result", "task_store_eager_result"))  # Celery: off unless asked
    link = options.get("link")
    link_error = options.get("link_error")
    # As Celery, a task applied inside a running task (eagerly or in a worker) is its child.
    stack = task.app.current_requests.stack
    parent = stack[-1] if stack else None
    request = Request(
        id=task_id,
        name=task.name,
        args=args,
        kwargs=kwargs,
        retries=int(options.get("retries") or 0),
        hostname="eager",
        delivery_info={  # as Celery's eager request: these keys, and is_eager
            "exchange": options.get("exchange"),
            "routing_key": options.get("routing_key") or options.get("queue"),
            "priority": options.get("priority"),
            "is_eager": True,
        },
        root_id=options.get("root_id") or (parent and parent.root_id) or task_id,
        parent_id=options.get("parent_id") or (parent.id if parent else None),
        callbacks=_as_list(link),
        errbacks=_as_list(link_error),
        chain=options.get("chain"),
        is_eager=True,
        called_directly=False,
        # What the task asked for, as Celery's; that nothing is stored unless ``store`` is trace's own flag.
        ignore_result=bool(options.get("ignore_result", task.opt("ignore_result"))),
        message_headers=_eager_headers(options),
    )
    outcome = trace.run(task.app, task, request, store=store)
    if outcome.state == states.FAILURE and task.app.conf.task_eager_propagates:
        raise outcome.value
    return EagerResult(task_id, outcome.value, outcome.state, outcome.traceback, app=task.app)


def _as_list(value: Any) -> list[Any] | None:
    if value is None:
        return None
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _eager_headers(options: dict[str, Any]) -> dict[str, Any]:
    """Custom headers and stamps as a worker would see them, so ``self.request`` reads the same."""
    headers = dict(options.get("headers") or {})
    stamped = options.get("stamped_headers")
    if stamped:
        stamped = [stamped] if isinstance(stamped, str) else list(stamped)
        headers["stamped_headers"] = stamped
        # As Celery's ``Task.apply``: each stamp a list (a lone value wrapped, a missing one
        # empty); a worker reads them from the message as sent, so there they stay as given.
        headers["stamps"] = {key: _as_stamp(options.get(key, [])) for key in stamped}
    return headers


def _as_stamp(value: Any) -> Any:
    return value if value is None or isinstance(value, (list, tuple, set)) else [value]


def apply_canvas(sig: Signature, args: Sequence[Any], kwargs: dict[str, Any] | None, options: dict[str, Any]) -> Any:
    """``group.apply``/``chord.apply`` as Celery's: every member here, in order; a chord's body
    then runs here with the header's values (the built-in ``celery.group``/``celery.chord``
    tasks are for workers, not for a signature applied in place)."""
    from engine.workflows import Chord, Group, from_dict

    canvas = from_dict(sig)
    partial = [*args, *canvas["args"]] if args and not canvas.immutable else list(canvas["args"])
    if isinstance(canvas, Chord):
        header = _apply_group(canvas._header_group(), partial, kwargs, options)
        body = canvas.body
        values = header.get(propagate=bool(options.get("propagate", True)))
        if body is None:
            return header
        result = body.apply((values,), **{k: v for k, v in options.items() if k != "propagate"})
        result.parent = header
        return result
    assert isinstance(canvas, Group)
    return _apply_group(canvas, partial, kwargs, options)


def _apply_group(
    group: Any, partial: Sequence[Any], kwargs: dict[str, Any] | None, options: dict[str, Any]
) -> GroupResult:
    from engine.group_result import GroupResult

    opts = {k: v for k, v in options.items() if k not in ("propagate", "task_id")}
    results = [member.apply(partial, kwargs, **opts) for member in group._unrolled()]
    return GroupResult(options.get("task_id") or group.options.get("task_id") or new_id(), results, app=group.app)
