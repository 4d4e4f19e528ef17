"""Tasks run the same on our worker and on a real Celery 5.7 worker (worker-side compatibility).

The task bodies are defined once, here; ``tests/apps/celery_compat_worker.py`` registers the very
same functions under the same names on a ``celery.Celery`` app, so a test sends one message with a
Celery client and compares what each worker makes of it. This module never imports celery.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from engine import App

app = App("compat_worker")
app.conf.tqctl_owner_timeout = 3.0
app.conf.tqctl_heartbeat_interval = 0.5

# name -> (function, task options): what celery_compat_worker.py registers on Celery too.
SPECS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}


def task(name: str, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    def register(fun: Callable[..., Any]) -> Any:
        SPECS[name] = (fun, {"name": name, **options})
        return app.task(name=name, **options)(fun)

    return register


@task("compat.add")
def add(x: int, y: int) -> int:
    return x + y


@task("compat.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task("compat.started_at")
def started_at() -> float:
    """When it ran (wall clock): on one process, the order tasks ran in."""
    return time.time()


@task("compat.retry_with_args", bind=True, max_retries=1)
def retry_with_args(self: Any, foo: int, bar: int, label: str | None = None) -> dict[str, Any]:
    """First called with keywords, retried with positional ``args``: no parameter may come twice."""
    if not self.request.retries:
        raise self.retry(args=(foo + 1, bar + 1), countdown=0)
    return {"foo": foo, "bar": bar, "label": label, "retries": self.request.retries}


@task("compat.retry_with_kwargs", bind=True, max_retries=1)
def retry_with_kwargs(self: Any, foo: int, bar: int) -> dict[str, Any]:
    """First called positionally, retried with ``kwargs``: the keyword replaces the positional value."""
    if not self.request.retries:
        raise self.retry(kwargs={"foo": foo + 1}, countdown=0)
    return {"foo": foo, "bar": bar, "retries": self.request.retries}


@task("compat.retry_priority", bind=True, max_retries=1)
def retry_priority(self: Any) -> Any:
    """The retried message's priority, as the worker running the retry sees it."""
    if self.request.retries:
        return self.request.delivery_info["priority"]
    raise self.retry(countdown=0.1)


@task("compat.nesting", bind=True)
def nesting(self: Any, replacements: int, seen: list[int] | None = None) -> list[int]:
    """Replace itself ``replacements`` times, recording ``replaced_task_nesting`` at each level."""
    seen = [*(seen or []), self.request.replaced_task_nesting]
    if replacements:
        raise self.replace(self.s(replacements - 1, seen))
    return seen


@task("compat.progress", bind=True)
def progress(self: Any, current: int) -> int:
    """Reports progress with a custom event (``Task.send_event``)."""
    self.send_event("task-progress", current=current)
    return current


@task("compat.retry_plain", bind=True, max_retries=1)
def retry_plain(self: Any) -> int:
    """Retried once without an exception: its ``task-retried`` event carries ``exception="None"``."""
    if not self.request.retries:
        raise self.retry(countdown=0.1)
    return self.request.retries


class Unpickleable(Exception):
    """An exception whose class cannot be rebuilt from its own args (``__init__`` wants two)."""

    def __init__(self, foo: str, bar: str) -> None:
        super().__init__(foo)
        self.bar = bar


@task("compat.fail_unpickleable")
def fail_unpickleable(foo: str, bar: str) -> None:
    raise Unpickleable(foo, bar)


@task("compat.fail")
def fail(*args: Any) -> None:
    raise ValueError("header failed")


@task("compat.errback_old_style")
def errback_old_style(task_id: str) -> str:
    """An old-style errback: Celery sends it the failed task's id."""
    return task_id
