"""Celery's result trail: what a running task sends (a task, a chain's first step, a group as one
``GroupResult``) is recorded on its request and stored with its result as ``children``, so
``result.children`` and ``result.collect()`` walk the work it started.

Only a task whose ``trail`` is on (the default) keeps one; ``apply_async(add_to_parent=False)``
leaves a send out. A group's members are sent quietly and the group is added once, as Celery adds it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.app import App

_QUIET: ContextVar[bool] = ContextVar("engine_trail_quiet", default=False)


def add(app: App, result: Any) -> None:
    """Record ``result`` as a child of the task running in this thread, if one is and keeps a trail."""
    if _QUIET.get():
        return
    stack = app.current_requests.stack
    if not stack:
        return
    request = stack[-1]
    if request.called_directly:
        return
    task = app.tasks.get(request.name or "")
    if task is not None and not task.trail:
        return
    request.children.append(result)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Sends made inside are not recorded (a group's members: the group is recorded instead)."""
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


def stored(request: Any) -> list[Any] | None:
    """The trail as stored with the result: each child's ``as_tuple()`` (Celery's form)."""
    children = getattr(request, "children", None)
    return [child.as_tuple() for child in children] if children else None
