"""Tasks for the Celery-5.7-canvas tests (tests/integration/test_workflows.py), run by our workers.

``tests/apps/celery_workflows.py`` registers the very same functions on a real Celery app, so one
test can send with either client and run on either worker.
"""

from __future__ import annotations

from typing import Any

from engine import App, group
from engine.exceptions import Reject

app = App("workflows")
app.conf.tqctl_owner_timeout = 3.0
app.conf.tqctl_heartbeat_interval = 0.5


def add(x: int, y: int) -> int:
    return x + y


def tsum(values: list[int]) -> int:
    return sum(values)


def boom(*args: Any) -> None:
    raise ValueError(f"boom {args}")


def kind(value: Any) -> str:
    return type(value).__name__


def replace_with_add(self: Any, x: int) -> Any:
    return self.replace(self.app.signature("wf.add", (x, 100)))


def replace_with_group(self: Any, x: int) -> Any:
    add_sig = self.app.signature
    return self.replace(group(add_sig("wf.add", (x, 1)), add_sig("wf.add", (x, 2))))


def replace_with_empty_chain(self: Any, x: int) -> Any:
    from engine import chain

    return self.replace(chain(app=self.app))


def add_one_more(self: Any, x: int) -> int:
    self.add_to_chord(self.app.signature("wf.add", (100, 0), immutable=True))
    return x


def reject_once(self: Any) -> str:
    if not self.request.delivery_info.get("redelivered"):
        raise Reject("first delivery", requeue=True)
    return "redelivered"


def _ledger(line: str) -> None:
    import os

    path = os.environ.get("LEDGER")
    if path:
        with open(path, "a") as fh:
            fh.write(line + "\n")


def errback_new(request: Any, exc: BaseException, traceback: Any, label: str) -> None:
    _ledger(f"new {label} {request.id} {type(exc).__name__}")


def errback_old(task_id: str, label: str) -> None:
    _ledger(f"old {label} {task_id}")


PLAIN = {
    "wf.add": add,
    "wf.tsum": tsum,
    "wf.boom": boom,
    "wf.kind": kind,
    "wf.errback_new": errback_new,
    "wf.errback_old": errback_old,
}
BOUND = {
    "wf.replace_with_add": replace_with_add,
    "wf.replace_with_group": replace_with_group,
    "wf.replace_with_empty_chain": replace_with_empty_chain,
    "wf.add_one_more": add_one_more,
}

for _name, _fun in PLAIN.items():
    app.task(name=_name)(_fun)
for _name, _fun in BOUND.items():
    app.task(name=_name, bind=True)(_fun)
app.task(name="wf.reject_once", bind=True, acks_late=True)(reject_once)
