"""``Task``: the user's function plus its options, and the client side of sending it."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from engine.exceptions import Ignore, MaxRetriesExceededError, Retry
from engine.request import Request, RequestStack

if TYPE_CHECKING:
    from engine.app import App
    from engine.canvas import Signature
    from engine.result import AsyncResult

TASK_OPTIONS = (
    "name", "bind", "max_retries", "default_retry_delay", "autoretry_for", "retry_backoff",
    "retry_backoff_max", "retry_jitter", "rate_limit", "time_limit", "soft_time_limit",
    "acks_late", "ignore_result", "queue", "serializer", "track_started", "priority",
    "retry_kwargs", "shared",
)


def backoff_delay(retries: int, factor: float, maximum: float, jitter: bool) -> float:
    """Celery's exponential backoff: ``factor * 2**retries`` capped, with optional full jitter."""
    delay = min(maximum, factor * (2**retries))
    return float(random.randrange(int(delay) + 1)) if jitter else float(delay)


class Task:
    max_retries: int | None = 3
    default_retry_delay: float = 180
    autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: dict[str, Any] | None = None
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600
    retry_jitter: bool = True
    rate_limit: str | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    acks_late: bool | None = None
    ignore_result: bool | None = None
    queue: str | None = None
    serializer: str | None = None
    track_started: bool | None = None
    priority: int | None = None

    def __init__(self, app: App, fun: Callable[..., Any], name: str, bind: bool = False,
                 **options: Any) -> None:
        self.app = app
        self.fun = fun
        self.name = name
        self.bind = bind
        for key, value in options.items():
            if key not in TASK_OPTIONS:
                raise TypeError(f"unknown task option {key!r} for {name}")
            setattr(self, key, value)
        self.autoretry_for = tuple(self.autoretry_for or ())
        self._requests = RequestStack()
        self.__doc__ = fun.__doc__
        self.__name__ = getattr(fun, "__name__", name)
        self.__module__ = getattr(fun, "__module__", __name__)
        self.__wrapped__ = fun

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.run(*args, **kwargs)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self.fun(self, *args, **kwargs) if self.bind else self.fun(*args, **kwargs)

    @property
    def request(self) -> Request:
        return self._requests.top

    def push_request(self, request: Request) -> None:
        self._requests.push(request)

    def pop_request(self) -> None:
        self._requests.pop()

    # -- options resolved against the app's settings -------------------------------------------
    def opt(self, name: str, setting: str) -> Any:
        value = getattr(self, name)
        return self.app.conf.get(setting) if value is None else value

    # -- sending ------------------------------------------------------------------------------
    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None,
                    **options: Any) -> AsyncResult:
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        return self.app.send_task(self.name, args, kwargs, task=self, **options)

    def apply(self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None,
              **options: Any) -> AsyncResult:
        """Run inline in this process (eager mode); returns a result already settled."""
        from engine.eager import run_eagerly

        return run_eagerly(self, list(args or ()), dict(kwargs or {}), options)

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's name
        return self.app.AsyncResult(task_id)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        from engine.canvas import Signature

        return Signature(self.name, args, kwargs, app=self.app)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        from engine.canvas import Signature

        return Signature(self.name, args, kwargs, immutable=True, app=self.app)

    def signature(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                  **options: Any) -> Signature:
        from engine.canvas import Signature

        return Signature(self.name, args, kwargs or {}, options=options, app=self.app)

    def map(self, it: Any) -> Signature:
        from engine.canvas import Signature

        return Signature("celery.map", (), {"task": dict(self.s()), "it": list(it)}, immutable=True, app=self.app)

    def starmap(self, it: Any) -> Signature:
        from engine.canvas import Signature

        return Signature("celery.starmap", (), {"task": dict(self.s()), "it": list(it)}, immutable=True,
                         app=self.app)

    def chunks(self, it: Any, n: int) -> Any:
        from engine.workflows import Chunks

        return Chunks(self.s(), it, n)

    # -- canvas from inside a running task ---------------------------------------------------
    def replace(self, sig: dict[str, Any]) -> Any:
        """End this task and run ``sig`` in its place, under this task's id, group and chain."""
        from engine.workflows import replacement

        sig = replacement(self, sig)
        if self.request.is_eager:
            return sig.apply().get()
        sig.delay()
        raise Ignore("Replaced by new task")

    def add_to_chord(self, sig: Signature, lazy: bool = False) -> Any:
        """Add ``sig`` to the chord this task is a header member of (the body waits for it too)."""
        request = self.request
        if not request.chord:
            raise ValueError("Current task is not member of any chord")
        sig.set(group_id=request.group, group_index=request.group_index, chord=request.chord,
                root_id=request.root_id)
        sig.freeze()
        self.app.chord_join().add_to_chord(request.group or "")
        return sig if lazy else sig.delay()

    # -- retrying -----------------------------------------------------------------------------
    def retry(self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None,
              exc: BaseException | None = None, throw: bool = True,
              eta: dt.datetime | None = None, countdown: float | None = None,
              max_retries: int | None = None, **options: Any) -> Retry:
        """Re-send this task (same id, ``retries + 1``) and raise ``Retry`` to end this run."""
        request = self.request
        limit = self.max_retries if max_retries is None else max_retries
        if request.called_directly:
            raise exc if exc is not None else Retry("task called directly, not retried", exc)
        if limit is not None and request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}] args:{request.args} "
                f"kwargs:{request.kwargs}"
            )
        if eta is None and countdown is None:
            countdown = self.default_retry_delay
        when = countdown if countdown is not None else eta
        if request.is_eager:
            result = self.apply(args if args is not None else request.args,
                                kwargs if kwargs is not None else request.kwargs,
                                task_id=request.id, retries=request.retries + 1, **options)
            raise Retry(exc=exc, when=None, result=result)
        self.app.send_task(
            self.name,
            args if args is not None else request.args,
            kwargs if kwargs is not None else request.kwargs,
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
            **options,
        )
        retry = Retry(exc=exc, when=when)
        if throw:
            raise retry
        return retry
