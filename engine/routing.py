"""``task_routes`` resolution with Celery's shapes, so a routing table moves over unchanged.

An entry is a dict, or a list of ``(key, route)`` pairs (kept in order), whose keys are exact task
names, globs (``"shop.*"``) or compiled regexes (``re.compile(r"(image|video)\\.tasks\\..*")``); a
function ``router(name, args, kwargs, options, task=...)``; an object with Celery's pre-4.0
``route_for_task(name, args, kwargs)``; or a ``"module.attr"`` string naming one of those. A route is
an options dict such as ``{"queue": "high"}`` or a bare queue name. The first entry that gives a
route wins.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Router = Callable[..., Any]


def _normalize(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"queue": value}
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"a route must be a queue name or an options dict, not {value!r}")


def _pairs(entry: Any) -> list[tuple[Any, Any]] | None:
    """A table's (key, route) pairs in order, or None when ``entry`` is no table."""
    if isinstance(entry, Mapping):
        return list(entry.items())
    if isinstance(entry, (list, tuple)):
        return [tuple(pair) for pair in entry]  # type: ignore[misc]
    return None


def _lookup(pairs: Sequence[tuple[Any, Any]], name: str) -> dict[str, Any] | None:
    """As Celery's map routes: an exact name first, then the patterns in the table's order."""
    for key, value in pairs:
        if key == name:
            return _normalize(value)
    for key, value in pairs:
        if isinstance(key, re.Pattern):
            if key.match(name):
                return _normalize(value)
        elif isinstance(key, str) and "*" in key and fnmatch.fnmatchcase(name, key):
            return _normalize(value)
    return None


def _resolve(entry: str) -> Any:
    """A router named by its dotted path (``"proj.routers.route_task"`` or ``"proj.routers:Router"``)."""
    module, sep, attr = entry.partition(":")
    if not sep:
        module, _, attr = entry.rpartition(".")
    if not module or not attr:
        raise TypeError(f"task_routes entry {entry!r} names no router (expected 'module.attr')")
    found: Any = importlib.import_module(module)
    for part in attr.split("."):
        found = getattr(found, part)
    return found() if isinstance(found, type) and hasattr(found, "route_for_task") else found


def _ask(
    entry: Any, name: str, args: Sequence[Any], kwargs: Mapping[str, Any], options: Mapping[str, Any], task: Any
) -> dict[str, Any] | None:
    if isinstance(entry, str):
        entry = _resolve(entry)
    pairs = _pairs(entry)
    if pairs is not None:
        return _lookup(pairs, name)
    if hasattr(entry, "route_for_task"):  # Celery's pre-4.0 router classes
        return _normalize(entry.route_for_task(name, args, kwargs))
    if callable(entry):
        return _normalize(entry(name, args, kwargs, options, task=task))
    raise TypeError(f"task_routes entry {entry!r} is not a dict, a list of pairs, a router or its name")


def route(
    routes: Any,
    name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    options: Mapping[str, Any],
    task: Any = None,
) -> dict[str, Any]:
    """Options the first matching route gives for task ``name`` (empty when none matches); a
    router function gets the task object as ``task``, as Celery's does."""
    if not routes:
        return {}
    for entry in routes if isinstance(routes, (list, tuple)) else [routes]:
        found = _ask(entry, name, args, kwargs, options, task)
        if found:
            return found
    return {}
