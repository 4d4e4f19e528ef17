"""``Task``: Celery's task class: options as class attributes, hooks to override, and the client
side of sending it.

``@app.task`` builds a subclass per function (as Celery does), so a ``base=`` class's hooks and
attributes apply, and ``class MyTask(app.Task)`` with ``run`` is registered with
``app.register_task(MyTask())``. Options left ``None`` fall back to the app's settings
(``from_config``), read when used, so a setting changed after the task was declared still counts.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from engine.exceptions import Ignore, ImproperlyConfigured, MaxRetriesExceededError, Retry
from engine.request import Request, RequestStack

if TYPE_CHECKING:
    from engine.app import App
    from engine.canvas import Signature
    from engine.result import AsyncResult

# Task attribute → the setting it falls back to when left ``None`` (Celery's ``Task.from_config``):
# the two time limits here, the rest declared once on ``Task`` as ``_FromConfig`` (added below it).
FROM_CONFIG = {"time_limit": "task_time_limit", "soft_time_limit": "task_soft_time_limit"}
# Attributes that become default send options (Celery's ``extract_exec_options``).
EXEC_OPTIONS = (
    "queue",
    "routing_key",
    "exchange",
    "priority",
    "expires",
    "serializer",
    "time_limit",
    "soft_time_limit",
)


def backoff_delay(retries: int, factor: float, maximum: float, jitter: bool) -> float:
    """Celery's exponential backoff: ``factor * 2**retries`` capped, with optional full jitter."""
    delay = min(maximum, factor * (2**retries))
    return float(random.randrange(int(delay) + 1)) if jitter else float(delay)


_UNSET = object()


class _FromConfig:
    """A task option that, left unset (None), reads as its Celery setting on the task's app, as
    Celery's tasks take ``from_config`` values when bound: ``task.acks_late`` is the app's
    ``task_acks_late``, not None. What the engine itself decides by reads the task's own value
    (``Task.own``), so an unset option keeps its place in the engine's precedence rules."""

    def __init__(self, setting: str) -> None:
        self.setting = setting
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        holder = obj if obj is not None else owner
        value = obj.__dict__.get(self.name) if obj is not None else None
        app = getattr(holder, "_app", None)
        return app.conf.get(self.setting) if value is None and app is not None else value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value


class _StrictTyping(_FromConfig):
    """``typing`` left unset reads as the app's ``strict_typing`` (True unless the App says not),
    so ``task.typing`` is True by default, as Celery's."""

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        value = obj.__dict__.get(self.name) if obj is not None else None
        app = getattr(obj if obj is not None else owner, "_app", None)
        return bool(app.strict_typing) if value is None and app is not None else value


class Task:
    """Subclass it (``class X(app.Task)``) or let ``@app.task`` do it; every attribute is a Celery option."""

    _app: App | None = None
    name: str | None = None
    typing = _StrictTyping("strict_typing")  # unset: the app's ``strict_typing`` (True, as in Celery)
    max_retries: int | None = 3
    default_retry_delay: float = 180
    rate_limit = _FromConfig("task_default_rate_limit")
    ignore_result = _FromConfig("task_ignore_result")
    trail: bool = True
    send_events: bool = True
    store_errors_even_if_ignored = _FromConfig("task_store_errors_even_if_ignored")
    serializer = _FromConfig("task_serializer")
    time_limit: float | None = None
    soft_time_limit: float | None = None
    track_started = _FromConfig("task_track_started")
    acks_late = _FromConfig("task_acks_late")
    acks_on_failure_or_timeout = _FromConfig("task_acks_on_failure_or_timeout")
    reject_on_worker_lost = _FromConfig("task_reject_on_worker_lost")
    throws: tuple[type[BaseException], ...] = ()
    expires: float | dt.datetime | None = None
    priority = _FromConfig("task_default_priority")
    queue: str | None = None
    routing_key: str | None = None
    exchange: str | None = None
    resultrepr_maxsize: int = 1024
    store_eager_result = _FromConfig("task_store_eager_result")
    autoretry_for: tuple[type[BaseException], ...] = ()
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: dict[str, Any] | None = None
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600
    retry_jitter: bool = True
    pydantic: bool = False
    pydantic_strict: bool = False
    pydantic_context: dict[str, Any] | None = None
    pydantic_dump_kwargs: dict[str, Any] | None = None
    abstract = True
    _decorated_fun: Callable[..., Any] | None = None
    _check_arguments: Callable[..., None] | None = None
    _dump_arguments: Callable[..., tuple[Any, Any]] | None = None
    MaxRetriesExceededError = MaxRetriesExceededError

    # -- identity -----------------------------------------------------------------------------
    @property
    def app(self) -> App:
        if self._app is None:
            raise ImproperlyConfigured(
                f"task {self.name or type(self).__name__} is not registered with an app (use app.register_task(task))"
            )
        return self._app

    @property
    def registered_name(self) -> str:
        """``name``, which every task sent or signed must have (a class-based task gets it when registered)."""
        if self.name is None:
            raise ImproperlyConfigured(
                f"task class {type(self).__name__} has no name (register it with app.register_task(task))"
            )
        return self.name

    @property
    def fun(self) -> Callable[..., Any]:
        """The user's function (``@app.task``), or ``run`` for a class-based task."""
        return self._decorated_fun if self._decorated_fun is not None else self.run

    @property
    def backend(self) -> Any:
        return self.app.backend

    def __repr__(self) -> str:
        return f"<@task: {self.name} of {self._app.main if self._app else '(unbound)'}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run in this process. Called directly (no worker or ``apply`` request for this task), the
        call gets a request of its own, as in Celery: ``self.request.args`` are the call's."""
        if self._requests.stack:
            return self.run(*args, **kwargs)
        self.push_request(args=args, kwargs=kwargs)
        try:
            return self.run(*args, **kwargs)
        finally:
            self.pop_request()

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Tasks must define the run method.")

    # -- the running request ------------------------------------------------------------------
    @property
    def _requests(self) -> RequestStack:
        stack = self.__dict__.get("_request_stack")
        if stack is None:
            stack = self.__dict__["_request_stack"] = RequestStack()
        return stack

    @property
    def request(self) -> Request:
        return self._requests.top

    @property
    def request_stack(self) -> RequestStack:
        return self._requests

    def push_request(self, request: Request | None = None, **fields: Any) -> None:
        self._requests.push(request if request is not None else Request(**fields))

    def pop_request(self) -> None:
        self._requests.pop()

    # -- options resolved against the app's settings -------------------------------------------
    def own(self, name: str) -> Any:
        """The option as this task (its decorator, class or annotations) set it; None when unset,
        where reading the attribute gives the app's setting instead. On every ``delay()`` (about
        ten reads), so a plain option is one ``getattr`` and only a configured one walks the classes."""
        if name not in CONFIGURED:
            return getattr(self, name, None)
        found = self.__dict__.get(name, _UNSET)
        if found is not _UNSET:
            return found
        for cls in type(self).__mro__:
            found = cls.__dict__.get(name, _UNSET)
            if found is not _UNSET:
                return None if isinstance(found, _FromConfig) else found
        return None

    def opt(self, name: str, setting: str | None = None) -> Any:
        value = self.own(name)
        setting = setting or FROM_CONFIG.get(name)
        return self.app.conf.get(setting) if value is None and setting else value

    def exec_options(self) -> dict[str, Any]:
        """The task's own defaults for a send (``expires``, ``queue``, ...); the call's options win."""
        return {key: value for key in EXEC_OPTIONS if (value := self.own(key)) is not None}

    # -- hooks (override in a base class; called with Celery's arguments) ----------------------
    def before_start(self, task_id: str, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """Called in the worker just before ``run``."""

    def on_success(self, retval: Any, task_id: str, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """Called in the worker after ``run`` returned and the result was stored."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Sequence[Any], kwargs: dict[str, Any], einfo: Any
    ) -> None:
        """Called in the worker when ``run`` raised (after retries are used up)."""

    def on_retry(
        self, exc: BaseException | None, task_id: str, args: Sequence[Any], kwargs: dict[str, Any], einfo: Any
    ) -> None:
        """Called in the worker when the task is retried."""

    def after_return(
        self, status: str, retval: Any, task_id: str, args: Sequence[Any], kwargs: dict[str, Any], einfo: Any
    ) -> None:
        """Called after the task finished SUCCESS or FAILURE (not on retry or reject), as Celery does."""

    # -- sending ------------------------------------------------------------------------------
    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def _prepare_send(
        self, args: Sequence[Any] | None, kwargs: dict[str, Any] | None, options: dict[str, Any]
    ) -> tuple[Sequence[Any] | None, dict[str, Any] | None, dict[str, Any]]:
        """The checks and option merging a sync and an async send share, so the two cannot drift."""
        if self.soft_time_limit and self.time_limit and self.soft_time_limit > self.time_limit:
            raise ValueError("soft_time_limit must be less than or equal to time_limit")
        typing = self.typing
        if typing and self._check_arguments is not None:
            self._check_arguments(*(args or ()), **(kwargs or {}))
        merged = self.exec_options()  # the call's options win; a bare delay() has none to merge
        if options:
            merged.update({k: v for k, v in options.items() if v is not None})
        options = merged
        if self._dump_arguments is not None and options.get("serializer") != "pickle":
            args, kwargs = self._dump_arguments(args, kwargs)
        return args, kwargs, options

    def apply_async(
        self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        args, kwargs, options = self._prepare_send(args, kwargs, options)
        app = self.app
        # ``get``: the setting's default (False) is in the app's defaults, and the attribute's
        # fallback to Celery's defaults was half a microsecond of every send.
        if app.conf.get("task_always_eager"):
            return self.apply(args, kwargs, **options)
        return app.send_task(self.registered_name, args, kwargs, task=self, **options)

    async def adelay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """``delay`` for coroutines: returns once the broker has the message (engine.aio)."""
        return await self.aapply_async(args, kwargs)

    async def aapply_async(
        self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """``apply_async`` for coroutines: concurrent callers share one pipelined connection."""
        from engine import aio

        args, kwargs, options = self._prepare_send(args, kwargs, options)
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        return await aio.asend_task(self.app, str(self.name), args, kwargs, task=self, **options)

    def delay_on_commit(self, *args: Any, **kwargs: Any) -> None:
        """Celery 5.4's: ``delay`` once the Django transaction in progress commits (at once outside
        one); nothing is sent if it rolls back, so a worker never looks for a row that is not there."""
        _on_commit(functools.partial(self.delay, *args, **kwargs))

    def apply_async_on_commit(
        self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> None:
        """Celery 5.4's: ``apply_async`` once the Django transaction in progress commits."""
        _on_commit(functools.partial(self.apply_async, args, kwargs, **options))

    def apply(
        self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """Run inline in this process (eager mode); returns a result already settled."""
        from engine.eager import run_eagerly

        return run_eagerly(self, list(args or ()), dict(kwargs or {}), options)

    def AsyncResult(self, task_id: str, **kwargs: Any) -> AsyncResult:  # noqa: N802 - Celery's name
        return self.app.AsyncResult(task_id, task_name=self.name)

    def send_event(
        self, type_: str, retry: bool = True, retry_policy: dict[str, Any] | None = None, **fields: Any
    ) -> None:
        """Celery's: a custom event about the running task (``uuid`` is its id), from the worker's host.

        Sent whether or not the worker sends task events (``-E``), as Celery's ``default_dispatcher``
        does: a task that reports progress this way means it to be seen. ``retry`` and
        ``retry_policy`` are accepted for Celery's signature; the connection retries as any other."""
        import socket

        from engine.broker.connect import worker_fanout
        from engine.events.dispatcher import EventDispatcher

        request = self.request
        fanout, _ = worker_fanout(self.app.broker_url(), self.app.backend_url())  # the worker's own channel
        try:
            EventDispatcher(fanout, request.hostname or socket.gethostname()).send(type_, uuid=request.id, **fields)
        finally:
            fanout.close()

    def update_state(
        self, task_id: str | None = None, state: str | None = None, meta: Any = None, **kwargs: Any
    ) -> None:
        """Store a custom state (e.g. ``PROGRESS`` with a meta dict) for this or another task."""
        from engine.protocol.results import meta as result_meta

        task_id = task_id or self.request.id
        backend = self.app.backend
        if backend is not None and task_id:
            request = self.request
            backend.store(
                task_id,
                result_meta(task_id, state or "PENDING", meta, parent_id=request.parent_id, group_id=request.group),
            )

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        from engine.canvas import Signature

        return Signature(self.registered_name, args, kwargs, app=self.app)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        from engine.canvas import Signature

        return Signature(self.registered_name, args, kwargs, immutable=True, app=self.app)

    def signature(
        self,
        args: Sequence[Any] | None = (),
        kwargs: dict[str, Any] | None = None,
        *,
        options: dict[str, Any] | None = None,
        immutable: bool = False,
        subtask_type: str | None = None,
        **ex: Any,
    ) -> Signature:
        """Celery's ``task.signature((2, 2), immutable=True, countdown=10)``: ``immutable`` and
        ``options`` are the signature's own; other keywords are options."""
        from engine.canvas import Signature

        return Signature(
            self.registered_name,
            args or (),
            kwargs or {},
            options={**(options or {}), **ex},
            subtask_type=subtask_type,
            immutable=immutable,
            app=self.app,
        )

    subtask = signature

    def map(self, it: Any) -> Signature:
        from engine.workflows import xmap

        return xmap(self.s(), it)

    def starmap(self, it: Any) -> Signature:
        from engine.workflows import xstarmap

        return xstarmap(self.s(), it)

    def chunks(self, it: Any, n: int) -> Any:
        from engine.workflows import Chunks

        return Chunks(self.s(), it, n)

    # -- canvas from inside a running task ---------------------------------------------------
    def replace(self, sig: dict[str, Any]) -> Any:
        """End this task and run ``sig`` in its place, under this task's id, group and chain."""
        from engine.workflows import replacement

        sig = replacement(self, sig)
        if self.request.is_eager:
            return sig.apply().get(disable_sync_subtasks=False)
        sig.delay()
        raise Ignore("Replaced by new task")

    def add_to_chord(self, sig: Signature, lazy: bool = False) -> Any:
        """Add ``sig`` to the chord this task is a header member of (the body waits for it too)."""
        request = self.request
        if not request.chord:
            raise ValueError("Current task is not member of any chord")
        sig.set(group_id=request.group, group_index=request.group_index, chord=request.chord, root_id=request.root_id)
        sig.freeze()
        self.app.chord_join().add_to_chord(request.group or "")
        return sig if lazy else sig.delay()

    # -- retrying -----------------------------------------------------------------------------
    def retry(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: dt.datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Retry:
        """Re-send this task (same id, ``retries + 1``) and raise ``Retry`` to end this run."""
        request = self.request
        limit = self.max_retries if max_retries is None else max_retries
        if request.called_directly:
            raise exc if exc is not None else Retry("task called directly, not retried", exc)
        if limit is not None and request.retries >= limit:
            if exc is not None:
                raise exc
            shown_args = tuple(request.args if args is None else args)  # Celery's message shows a tuple
            shown_kwargs = request.kwargs if kwargs is None else kwargs
            raise MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}] args:{shown_args} kwargs:{shown_kwargs}"
            )
        if eta is None and countdown is None:
            countdown = self.default_retry_delay
        when = countdown if countdown is not None else eta
        args, kwargs = _retry_arguments(getattr(self, "run", None), request, args, kwargs)
        if request.is_eager:
            result = self.apply(
                args,
                kwargs,
                task_id=request.id,
                retries=request.retries + 1,
                **options,
            )
            raise Retry(exc=exc, when=None, result=result)
        priority = (request.delivery_info or {}).get("priority")
        if priority is not None:
            options.setdefault("priority", priority)  # as Celery: a retry keeps the message's priority
        self.app.send_task(
            self.registered_name,
            args,
            kwargs,
            task=self,
            task_id=request.id,
            retries=request.retries + 1,
            countdown=countdown,
            eta=eta,
            root_id=request.root_id,
            parent_id=request.id,
            group_id=request.group,
            group_index=request.group_index,
            link=request.callbacks,
            link_error=request.errbacks,
            chain=request.chain,
            chord=request.chord,
            queue=options.pop("queue", request.delivery_info.get("routing_key")),
            **{**_carried(request), **options},
        )
        retry = Retry(exc=exc, when=when)
        if throw:
            raise retry
        return retry


# The options that read as the app's setting when unset (``own`` tells them apart from the rest).
CONFIGURED = frozenset(name for name, value in vars(Task).items() if isinstance(value, _FromConfig))
FROM_CONFIG.update({name: vars(Task)[name].setting for name in CONFIGURED})


def _retry_arguments(
    run: Callable[..., Any] | None, request: Request, args: Sequence[Any] | None, kwargs: dict[str, Any] | None
) -> tuple[Sequence[Any], dict[str, Any]]:
    """The retry's arguments: what ``retry`` was given, the request's for what it was not.

    Why the signature: a task first called with keywords and retried with ``args=`` (or the other way
    round) must not get a parameter twice. As Celery 5.7, parameters given positionally in ``args``
    are dropped from the request's kwargs, and keywords given in ``kwargs`` take the place of the
    request's positional values they name.
    """
    old_args, old_kwargs = list(request.args or ()), dict(request.kwargs or {})
    switching = (args is not None and kwargs is None and old_kwargs) or (
        kwargs is not None and args is None and old_args
    )
    if switching and run is not None:
        try:
            signature = inspect.signature(run)
        except (TypeError, ValueError):
            signature = None
        if signature is not None and args is not None:
            positional = [
                p
                for p in signature.parameters.values()
                if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            ]
            named = {p.name for p in positional[: len(args)] if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD}
            return args, {k: v for k, v in old_kwargs.items() if k not in named}
        if signature is not None and kwargs is not None:
            try:
                bound = signature.bind_partial(*old_args)
            except TypeError:
                bound = None
            if bound is not None:
                rest = dict(kwargs)
                for name in list(rest):
                    if (
                        name in bound.arguments
                        and signature.parameters[name].kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
                    ):
                        bound.arguments[name] = rest.pop(name)
                return bound.args, {**bound.kwargs, **rest}
    return (old_args if args is None else args), (old_kwargs if kwargs is None else kwargs)


def _on_commit(send: Callable[[], Any]) -> None:
    try:
        from django.db import transaction
    except ImportError:
        raise ImproperlyConfigured("delay_on_commit and apply_async_on_commit need Django") from None
    transaction.on_commit(send)


def _carried(request: Request) -> dict[str, Any]:
    """What a retry keeps from the request besides ids and links: custom headers and stamps (as Celery)."""
    carried: dict[str, Any] = {}
    if request.headers:
        carried["headers"] = dict(request.headers)
    stamped, stamps = request.stamped_headers, request.stamps
    if stamped:
        carried["stamped_headers"] = list(stamped)
        carried.update(stamps or {})
    return carried


class Context(Request):
    """Celery's ``celery.app.task.Context``: a task's request built by hand (``Context(id=...,
    group=..., chord=...)``), for code that calls backend hooks such as ``on_chord_part_return``
    as a worker would. Any name is accepted, as Celery's; it is not a task being run."""

    def __init__(self, *args: dict[str, Any], **kwargs: Any) -> None:
        super().__init__()
        self.called_directly = False
        self.update(*args, **kwargs)

    def update(self, *args: dict[str, Any], **kwargs: Any) -> None:
        for source in (*args, kwargs):
            for key, value in dict(source).items():
                setattr(self, key, value)


class _Default:
    """Stands for any default value in a stub's source text."""

    def __repr__(self) -> str:
        return "_default"


def argument_checker(fun: Callable[..., Any], bound: bool) -> Callable[..., None] | None:
    """Checks call arguments against ``fun``'s signature at send time (Celery's ``typing=True``):
    a wrong call raises Python's own ``TypeError`` (``add() takes 2 positional arguments but 3 were
    given``) in the caller instead of failing later on a worker.

    The check calls a stub with ``fun``'s parameters (names only: no defaults or annotations are
    evaluated), so the message is the interpreter's; ``Signature.bind`` is the fallback."""
    import inspect

    try:
        sig = inspect.signature(fun)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())[1 if bound else 0 :]
    label = getattr(fun, "__name__", "task")
    stub = _stub(
        label,
        [p.replace(annotation=p.empty, default=_Default() if p.default is not p.empty else p.empty) for p in params],
    )
    if stub is not None:
        return stub
    sig = sig.replace(parameters=params)

    def check(*args: Any, **kwargs: Any) -> None:
        try:
            sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{label}() {exc}") from None

    return check


def _stub(label: str, params: list[Any]) -> Callable[..., None] | None:
    import inspect

    try:
        text = str(inspect.Signature(params))
        namespace: dict[str, Any] = {"_default": None}
        exec(f"def _stub{text}:\n    return None", namespace)  # names only: nothing of the user's is evaluated
    except (SyntaxError, ValueError):
        return None
    stub = namespace["_stub"]
    try:
        stub.__code__ = stub.__code__.replace(co_name=label, co_qualname=label)
    except TypeError:  # Python 3.10: no co_qualname
        stub.__code__ = stub.__code__.replace(co_name=label)
    stub.__name__ = stub.__qualname__ = label
    return stub


def task_from_function(
    app: App, fun: Callable[..., Any], name: str, base: type[Task], bind: bool, options: dict[str, Any]
) -> Task:
    """A ``base`` subclass whose ``run`` is ``fun`` and whose attributes are the decorator's options.

    An option must be a Celery task option or an attribute of ``base`` (a custom base class's own
    options pass); Celery would also accept a misspelt one and ignore it, we name it instead."""
    unknown = [key for key in options if not hasattr(base, key)]
    if unknown:  # Celery would set them silently; a misspelt option doing nothing is worse than an error
        import difflib

        known = [k for k in dir(base) if not k.startswith("_")]
        hint = difflib.get_close_matches(unknown[0], known, n=1)
        raise TypeError(
            f"unknown task option {unknown[0]!r} for {name}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + "; declare it as an attribute of a base= class to pass your own"
        )
    run_fun = fun
    dump_arguments = None
    if options.get("pydantic"):
        from engine.pydantic_args import pydantic_wrapper

        run_fun, dump = pydantic_wrapper(
            app,
            fun,
            name,
            bool(options.get("pydantic_strict")),
            options.get("pydantic_context"),
            options.get("pydantic_dump_kwargs"),
            bound=bind,
        )
        dump_arguments = staticmethod(dump)
    attrs: dict[str, Any] = {
        "_app": app,
        "name": name,
        "run": run_fun if bind else staticmethod(run_fun),
        "_decorated_fun": staticmethod(fun),
        "_check_arguments": staticmethod(checker) if (checker := argument_checker(fun, bind)) else None,
        "_dump_arguments": dump_arguments,
        "__doc__": fun.__doc__,
        "__module__": getattr(fun, "__module__", __name__),
        "__wrapped__": fun,
        "abstract": False,
        **options,
    }
    for key in ("autoretry_for", "dont_autoretry_for", "throws"):
        if key in attrs:
            value = attrs[key]
            attrs[key] = tuple(value) if isinstance(value, (list, tuple, set)) else (value,) if value else ()
    cls = type(getattr(fun, "__name__", "task"), (base,), attrs)
    try:
        cls.__qualname__ = fun.__qualname__
    except AttributeError:
        pass
    return cls()
