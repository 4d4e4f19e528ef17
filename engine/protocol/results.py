"""Celery's Redis result-backend format: key names, meta JSON, exception encoding.

Exceptions are rebuilt only from builtins, our Celery-named classes or modules already
imported; anything else becomes a fabricated class of the same name. Nothing is imported or
unpickled on the strength of what the backend says (CVE-2021-23727).
"""

from __future__ import annotations

import builtins
import datetime as dt
import sys
import traceback as tb_module
from typing import Any

from engine import exceptions, states

TASK_KEY_PREFIX = "celery-task-meta-"
GROUP_KEY_PREFIX = "celery-taskset-meta-"
CELERY_EXC_MODULE = "celery.exceptions"
# What a Celery prefork worker stores under billiard's module: ``celery.exceptions`` re-exports
# these, so code moved from Celery catches them by our classes of the same names.
BILLIARD_EXC_MODULE = "billiard.exceptions"
BILLIARD_EXCEPTIONS = frozenset({"TimeLimitExceeded", "SoftTimeLimitExceeded", "WorkerLostError", "Terminated"})


def task_key(task_id: str) -> str:
    return TASK_KEY_PREFIX + task_id


def group_key(group_id: str) -> str:
    return GROUP_KEY_PREFIX + group_id


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def encode_exception(exc: BaseException) -> dict[str, Any]:
    cls = type(exc)
    module = cls.__module__
    if cls.__name__ in exceptions.CELERY_EXCEPTIONS and module == exceptions.__name__:
        module = CELERY_EXC_MODULE
    args = list(exc.args) if exc.args else []
    safe_args = [_storable_arg(a) for a in args]
    return {"exc_type": cls.__name__, "exc_message": safe_args, "exc_module": module}


def _storable_arg(value: Any) -> Any:
    """An exception argument as stored: as it is when JSON (with kombu's tags) can carry it, as
    Celery's ``ensure_serializable`` keeps it (``HttpError(404, {"x": "y"})`` comes back with its
    dict), else its repr."""
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    from engine.serialization import json_dumps

    try:
        json_dumps(value)
    except (TypeError, ValueError, RecursionError, OverflowError):
        return repr(value)
    return value


def decode_exception(data: Any) -> BaseException:
    """Meta ``result`` of a failure → an exception instance a user can ``isinstance`` check."""
    if not isinstance(data, dict) or "exc_type" not in data:
        return Exception(repr(data))
    name = str(data.get("exc_type"))
    module = str(data.get("exc_module") or "builtins")
    message = data.get("exc_message")
    args = tuple(message) if isinstance(message, (list, tuple)) else (message,)
    cls = _exception_class(name, module)
    try:
        return cls(*args)
    except Exception:
        pass
    try:
        exc = cls.__new__(cls)
        exc.args = args
        return exc
    except Exception:  # a class that cannot be rebuilt from its message (pydantic's ValidationError)
        fallback: type[Exception] = type(name, (Exception,), {"__module__": module})
        return fallback(*args)


def _exception_class(name: str, module: str) -> type[BaseException]:
    candidate: Any = None
    if module == "builtins":
        candidate = getattr(builtins, name, None)
    elif module in (CELERY_EXC_MODULE, exceptions.__name__) or module.startswith("celery."):
        candidate = exceptions.CELERY_EXCEPTIONS.get(name)
    elif module == BILLIARD_EXC_MODULE and name in BILLIARD_EXCEPTIONS:
        candidate = exceptions.CELERY_EXCEPTIONS[name]
    if candidate is None and module in sys.modules:
        candidate = getattr(sys.modules[module], name, None)
    if isinstance(candidate, type) and issubclass(candidate, BaseException):
        return candidate
    return type(name, (Exception,), {"__module__": module})


def format_traceback(exc: BaseException) -> str:
    return "".join(tb_module.format_exception(type(exc), exc, exc.__traceback__))


def meta(
    task_id: str,
    state: str,
    result: Any = None,
    *,
    traceback: str | None = None,
    children: list[Any] | None = None,
    parent_id: str | None = None,
    group_id: str | None = None,
    extended: dict[str, Any] | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "status": state,
        "result": result,
        "traceback": traceback,
        "children": children or [],
        "date_done": now_iso() if state in states.READY_STATES else None,
        "task_id": task_id,
    }
    if parent_id:
        doc["parent_id"] = parent_id
    if group_id:
        doc["group_id"] = group_id
    if extended:
        doc.update(extended)
    return doc


def revoked_result(reason: str = "revoked") -> dict[str, Any]:
    return {"exc_type": "TaskRevokedError", "exc_message": [reason], "exc_module": CELERY_EXC_MODULE}
