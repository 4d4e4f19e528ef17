"""Custom remote-control commands: Celery's ``@control_command`` and ``@inspect_command``.

Celery's decorators put the function in one process-wide registry. Ours only mark the function;
each worker collects the marked functions from the modules of its own app (the modules that hold
the app, and those that define its tasks), plus what ``app.control_command(...)`` registered on
that app. Two apps in one process never see each other's commands.

A handler is called as Celery calls it, ``fun(state, **arguments)``; ``state`` has Celery's
``app``, ``hostname`` and ``consumer``, plus our ``worker``. Its return value is the reply.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import FunctionType, ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.app import App
    from engine.worker.remote import RemoteControl

log = logging.getLogger("engine.worker")
MARK = "__remote_command__"
Handler = Callable[..., Any]


@dataclass(frozen=True)
class CommandSpec:
    """Celery's ``controller_info_t``: what ``celery inspect --list`` shows and how its CLI maps
    positional words to arguments (``args``: ``(name, type)`` pairs; ``variadic``: the rest)."""

    name: str
    type: str  # "control" or "inspect"
    fun: Handler
    visible: bool = True
    default_timeout: float = 1.0
    help: str | None = None
    signature: str | None = None
    args: tuple[tuple[str, Any], ...] = ()
    variadic: str | None = None
    alias: str | None = None  # a second name, as Celery's ``alias=``


@dataclass
class CommandState:
    """The ``state`` a handler receives (Celery's is an AttributeDict with the same first three)."""

    app: App
    hostname: str
    consumer: Any
    worker: Any
    control: RemoteControl


def _decorator(
    kind: str,
    name: str | None = None,
    *,
    visible: bool = True,
    default_timeout: float = 1.0,
    help: str | None = None,
    signature: str | None = None,  # noqa: A002 - Celery's keyword
    args: Sequence[tuple[str, Any]] | None = None,
    variadic: str | None = None,
    alias: str | None = None,
    **_: Any,
) -> Callable[[Handler], Handler]:
    def mark(fun: Handler) -> Handler:
        doc = (fun.__doc__ or "").strip()
        spec = CommandSpec(
            name=name or fun.__name__,
            type=kind,
            fun=fun,
            visible=visible,
            default_timeout=default_timeout,
            help=help or (doc.splitlines()[0] if doc else None),
            signature=signature,
            args=tuple(tuple(a) for a in args or ()),
            variadic=variadic,
            alias=alias,
        )
        setattr(fun, MARK, spec)
        return fun

    return mark


def control_command(name: str | None = None, **options: Any) -> Callable[[Handler], Handler]:
    """``@control_command(args=[('n', int)], signature='[N=1]')``: a command that changes the worker."""
    return _decorator("control", name, **options)


def inspect_command(name: str | None = None, **options: Any) -> Callable[[Handler], Handler]:
    """``@inspect_command()``: a command that only reads (Celery sends these via ``inspect``)."""
    return _decorator("inspect", name, **options)


def register_on(app: App, kind: str, name: str | None, options: dict[str, Any]) -> Callable[[Handler], Handler]:
    """``app.control_command(...)``/``app.inspect_command(...)``: marked, and kept by that app only."""

    def register(fun: Handler) -> Handler:
        marked = _decorator(kind, name, **options)(fun)
        app.remote_commands[getattr(marked, MARK).name] = marked
        return marked

    return register


def spec_of(value: Any) -> CommandSpec | None:
    """The mark on a plain function; other objects are not asked (a lazy proxy would evaluate)."""
    if not isinstance(value, FunctionType):
        return None
    spec = value.__dict__.get(MARK)
    return spec if isinstance(spec, CommandSpec) else None


def app_modules(app: App) -> list[ModuleType]:
    """The modules that belong to ``app``: where its tasks are defined, and those holding the app."""
    names = {getattr(getattr(task, "run", None) or task, "__module__", None) for task in list(app.tasks.values())}
    modules = [sys.modules[n] for n in names if isinstance(n, str) and n in sys.modules]
    for module in list(sys.modules.values()):
        try:
            namespace = module.__dict__
        except Exception:  # a lazy module stand-in may refuse; it holds no app of ours
            continue
        if isinstance(namespace, dict) and any(v is app for v in list(namespace.values())):
            modules.append(module)
    return modules


def collect(app: App, modules: Iterable[ModuleType] | None = None) -> dict[str, CommandSpec]:
    """Every custom command of ``app``: marked functions in its modules, then its own registry."""
    marked = [
        value
        for module in (modules if modules is not None else app_modules(app))
        for value in list(module.__dict__.values())
    ]
    found: dict[str, CommandSpec] = {}
    for value in [*marked, *getattr(app, "remote_commands", {}).values()]:
        spec = spec_of(value)
        if spec is not None:
            found[spec.name] = spec
            if spec.alias:
                found[spec.alias] = spec
    return found


# -- Celery's builtins that custom commands call (``from celery.worker.control import ...``) -----
def add_consumer(state: CommandState, queue: str, **options: Any) -> Any:
    """Start consuming ``queue`` (what ``control add_consumer`` does), from inside a custom command."""
    return state.control.dispatch("add_consumer", {"queue": queue, **options})


def cancel_consumer(state: CommandState, queue: str, **options: Any) -> Any:
    """Stop consuming ``queue`` (what ``control cancel_consumer`` does), from inside a custom command."""
    return state.control.dispatch("cancel_consumer", {"queue": queue, **options})
