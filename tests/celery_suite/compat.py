"""What the rewritten ``from celery... import X`` lines of the suite import, on our side.

Every name is looked up in the engine first (so a feature that lands in the engine is used at
once, with no change here). Only names the engine does not have yet fall back to a stand-in
defined below; a stand-in lets the suite's ``tasks.py`` import, and the tests that need the
real feature then fail honestly. ``STAND_INS`` lists which ones were used (the runner prints it).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any

import engine
from engine import states  # noqa: F401 - ``from celery import states``

# Where Celery's names may live on our side, searched in order.
_HOMES = (
    "engine",
    "engine.canvas",
    "engine.workflows",
    "engine.result",
    "engine.exceptions",
    "engine.task",
    "engine.signals",
    "engine.log",
    "engine.utils.log",
    "engine.utils.nodenames",
    "engine.utils.sysinfo",
    "engine.schedules",
    "engine.worker.control",
    "engine.remote_control",
    "engine.backend.base",
    "engine.serialization",
    "engine.stamping",
    "engine.protocol.task",
)

STAND_INS: set[str] = set()


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# Celery's name → ours, where they differ.
_ALIASES = {"_chain": "Chain", "_group": "Group", "_chord": "Chord", "uuid": "new_id"}


def _engine_name(name: str) -> Any:
    """``name`` from the first home that defines it. A module a home merely imported (``uuid`` in
    ``engine.canvas``) is not the engine's name; a module of the engine's own (``from celery import
    beat``) is taken as ``engine.<name>``."""
    name = _ALIASES.get(name, name)
    for home in _HOMES:
        module = _module(home)
        found = getattr(module, name, None) if module is not None else None
        # a home's own ``import uuid`` is no answer; the engine's modules (``signals``) are
        if found is not None and not (isinstance(found, ModuleType) and not found.__name__.startswith("engine")):
            return found
    own = _module(f"engine.{name}") if name.isidentifier() else None
    if own is not None:
        return own
    raise AttributeError(name)


# -- stand-ins: only used while the engine lacks the name ---------------------------------------


class _StandInVisitor:
    """Stand-in for ``StampingVisitor`` so ``class X(StampingVisitor)`` in tasks.py can be defined."""


def _stand_in_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def _stand_in_command(*_args: Any, **_kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@control_command(...)``/``@inspect_command(...)``: leaves the function unregistered."""
    return lambda fun: fun


def _unavailable(name: str) -> Callable[..., Any]:
    def call(*_args: Any, **_kw: Any) -> Any:
        raise NotImplementedError(f"{name} is not available in the engine")

    return call


def _shared_task(*args: Any, **options: Any) -> Any:
    """``engine.shared_task`` minus the options ``engine.task.Task`` refuses (recorded as stand-ins)."""
    from engine import task as task_module

    known = getattr(task_module, "TASK_OPTIONS", None)
    if known is not None:
        for key in [k for k in options if k not in known and k != "base"]:
            STAND_INS.add(f"shared_task({key}=) ignored")
            options.pop(key)
    return engine.shared_task(*args, **options)


_FALLBACKS: dict[str, Callable[[], Any]] = {
    "StampingVisitor": lambda: _StandInVisitor,
    "get_task_logger": lambda: _stand_in_logger,
    "control_command": lambda: _stand_in_command,
    "inspect_command": lambda: _stand_in_command,
    "add_consumer": lambda: _unavailable("add_consumer"),
    "cancel_consumer": lambda: _unavailable("cancel_consumer"),
    "before_task_publish": lambda: SimpleNamespace(connect=_stand_in_command(), disconnect=lambda *a, **k: None),
    "task_received": lambda: SimpleNamespace(connect=_stand_in_command(), disconnect=lambda *a, **k: None),
}


def __getattr__(name: str) -> Any:
    if name == "shared_task":
        return _shared_task
    try:
        return _engine_name(name)
    except AttributeError:
        pass
    if name in _FALLBACKS:
        STAND_INS.add(name)
        return _FALLBACKS[name]()
    STAND_INS.add(name)
    if name[:1].isupper():  # a class: something to subclass or isinstance() against
        base = Exception if name.endswith(("Error", "Exception", "Wrapper")) else object
        return type(name, (base,), {"__doc__": f"stand-in: the engine has no {name}"})
    return _unavailable(name)
