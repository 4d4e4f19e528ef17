"""Tasks that exist under the SAME names on our engine and on a real Celery worker.

Each task body is a plain function defined once, here; ``tests/apps/celery_interop.py`` registers
the very same functions on a ``celery.Celery`` app with the same names and options. So whichever
implementation runs a message, the code is identical and only the engine around it differs; a
task reports which one ran it (``impl``). This module never imports celery.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from engine import App

app = App("interop")
app.conf.tqctl_owner_timeout = 3.0
app.conf.tqctl_heartbeat_interval = 0.5

# name -> (function, task options): what celery_interop.py registers on the Celery side too.
SPECS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}


class PaymentDeclined(Exception):
    """A user exception, importable on both sides, so its type must read back by name."""


ERRORS: dict[str, type[Exception]] = {
    "ValueError": ValueError,
    "KeyError": KeyError,
    "PaymentDeclined": PaymentDeclined,
}


def task(name: str, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    def register(fun: Callable[..., Any]) -> Any:
        SPECS[name] = (fun, {"name": name, **options})
        return app.task(name=name, **options)(fun)

    return register


def impl(task_self: Any) -> str:
    """Which engine runs this task: "celery" on a celery.Celery app, else "tqctl"."""
    return "celery" if type(task_self.app).__module__.startswith("celery") else "tqctl"


def _ledger(line: str) -> None:
    path = os.environ.get("LEDGER")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{line} {time.time():.3f}\n")


@task("interop.add")
def add(x: int, y: int) -> int:
    return x + y


@task("interop.whoami", bind=True)
def whoami(self: Any) -> str:
    return impl(self)


@task("interop.fail")
def fail(kind: str, message: str) -> None:
    raise ERRORS[kind](message)


@task("interop.request_info", bind=True)
def request_info(self: Any) -> dict[str, Any]:
    r = self.request
    return {
        "impl": impl(self),
        "id": r.id,
        "retries": r.retries,
        "args": list(r.args or ()),
        "kwargs": dict(r.kwargs or {}),
        "root_id": r.root_id,
        "parent_id": r.parent_id,
        "hostname": r.hostname,
        "routing_key": (r.delivery_info or {}).get("routing_key"),
        "header": (r.headers or {}).get("x-tenant"),
        "started": time.time(),
    }


@task("interop.flaky", bind=True, max_retries=3)
def flaky(self: Any, succeed_on: int) -> dict[str, Any]:
    """Retries (same id, ``retries + 1``) until ``succeed_on``; past max_retries the KeyError stands."""
    retries = self.request.retries
    _ledger(f"flaky {impl(self)} {retries}")
    if retries < succeed_on:
        raise self.retry(exc=KeyError(f"attempt {retries}"), countdown=0.2)
    return {"impl": impl(self), "retries": retries}


@task("interop.give_up", bind=True, max_retries=2)
def give_up(self: Any) -> None:
    """Retries without an exception, so the last attempt ends in MaxRetriesExceededError."""
    raise self.retry(countdown=0.1)


@task("interop.hop", bind=True, max_retries=5)
def hop(self: Any, path: list[str], seen: list[list[Any]]) -> list[list[Any]]:
    """Retry onto the queue ``path[retries]``: each retry message crosses to the other engine."""
    r = self.request
    seen = [*seen, [impl(self), r.retries, r.id, r.parent_id, r.root_id]]
    if r.retries < len(path):
        raise self.retry(args=[path, seen], countdown=0.1, queue=path[r.retries])
    return seen


@task("interop.retry_once", bind=True, max_retries=1)
def retry_once(self: Any, with_exc: bool) -> str:
    """One retry with a long countdown, so a client can watch the RETRY state the worker stored."""
    if self.request.retries == 0:
        raise self.retry(exc=KeyError("later") if with_exc else None, countdown=1.5)
    return f"done on {impl(self)}"
