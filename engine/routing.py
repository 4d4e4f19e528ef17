"""``task_routes`` resolution with Celery's shapes: dict, list of dicts, or callables.

Keys may be exact task names or glob patterns (``"shop.*"``); values are option dicts such as
``{"queue": "high"}`` or a bare queue name string.
"""

from __future__ import annotations

import fnmatch
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


def _lookup(table: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    if name in table:
        return _normalize(table[name])
    for pattern, value in table.items():
        if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(name, pattern):
            return _normalize(value)
    return None


def route(
    routes: Any, name: str, args: Sequence[Any], kwargs: Mapping[str, Any], options: Mapping[str, Any]
) -> dict[str, Any]:
    """Options the first matching route gives for task ``name`` (empty when none matches)."""
    if not routes:
        return {}
    for entry in routes if isinstance(routes, (list, tuple)) else [routes]:
        if isinstance(entry, Mapping):
            found = _lookup(entry, name)
        elif callable(entry):
            found = _normalize(entry(name, args, kwargs, options, task=None))
        else:
            raise TypeError(f"task_routes entry {entry!r} is not a dict or a callable")
        if found:
            return found
    return {}
