"""``@shared_task``: tasks declared in a library before any ``App`` exists.

Celery keeps a process-wide "current app" for this. We keep only the list of declarations and
the last app created, here and nowhere else, because the API itself requires that link.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.app import App
    from engine.task import Task

_declarations: list[tuple[Callable[..., Any], dict[str, Any]]] = []
_apps: list[weakref.ref[App]] = []


def register_app(app: App) -> None:
    _apps.append(weakref.ref(app))
    for fun, options in _declarations:
        app.task(**options)(fun)


def make_current(app: App) -> None:
    """``app.set_default()``: this app is the current one from now on (the last in the list)."""
    _apps[:] = [ref for ref in _apps if ref() is not None and ref() is not app]
    _apps.append(weakref.ref(app))


def existing_app() -> App | None:
    """The current app if one was created (none is made up)."""
    for ref in reversed(_apps):
        app = ref()
        if app is not None:
            return app
    return None


def _current_app() -> App:
    app = existing_app()
    if app is not None:
        return app
    from engine.app import App

    return App()


class SharedTask:
    """Stands in for the task of whichever app is current when it is used."""

    def __init__(self, fun: Callable[..., Any], options: dict[str, Any]) -> None:
        self.fun = fun
        self.options = options
        self.__name__ = getattr(fun, "__name__", "task")
        self.__doc__ = fun.__doc__
        self.__wrapped__ = fun

    def _task(self) -> Task:
        app = _current_app()
        name = self.options.get("name") or app.default_name(self.fun)
        if name not in app.tasks:
            app.task(**self.options)(self.fun)
        return app.tasks[name]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._task()(*args, **kwargs)

    def _engine_signal_sender(self) -> Task:
        """``signal.connect(sender=shared)`` means the current app's task (Celery resolves its proxy too)."""
        return self._task()

    def __repr__(self) -> str:
        return f"<@shared_task: {self.options.get('name') or self.__name__}>"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task(), name)


def shared_task(*args: Any, **options: Any) -> Any:
    def decorate(fun: Callable[..., Any]) -> SharedTask:
        _declarations.append((fun, options))
        for ref in _apps:
            app = ref()
            if app is not None:
                app.task(**options)(fun)
        return SharedTask(fun, options)

    if len(args) == 1 and callable(args[0]) and not options:
        return decorate(args[0])
    return decorate


class _Current:
    """Celery's ``current_app``/``current_task`` proxies: every attribute is looked up on the object
    current at the time of use (a stateless stand-in, not a copy)."""

    def __init__(self, get: Callable[[], Any], what: str) -> None:
        object.__setattr__(self, "_get", get)
        object.__setattr__(self, "_what", what)

    def _get_current_object(self) -> Any:
        return self._get()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def __bool__(self) -> bool:
        return self._get() is not None

    def __repr__(self) -> str:
        return f"<current {self._what}: {self._get()!r}>"


def _running_task() -> Any:
    from engine.log import current_task

    return current_task()


current_app = _Current(_current_app, "app")
current_task = _Current(_running_task, "task")
