"""Tasks for the public-API integration tests (tests/integration/test_api.py), run by real workers.

The broker comes from ``TQCTL_BROKER``; ``ACCEPT_CONTENT`` (comma-separated) lets one test start
a worker that accepts pickle. ``LEDGER`` names a file each attempt appends a line to, with the
time it started, so tests can check spacing across processes.
"""

from __future__ import annotations

import os
import time
from typing import Any

from engine import App

app = App("api")
app.conf.tqctl_owner_timeout = 3.0
app.conf.tqctl_heartbeat_interval = 0.5
if os.environ.get("ACCEPT_CONTENT"):
    app.conf.accept_content = os.environ["ACCEPT_CONTENT"].split(",")


def ledger(line: str) -> None:
    path = os.environ.get("LEDGER")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{line} {time.time():.6f}\n")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True)
def request_info(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    r = self.request
    return {
        "id": r.id,
        "retries": r.retries,
        "args": list(r.args),
        "kwargs": dict(r.kwargs),
        "hostname": r.hostname,
        "delivery_info": dict(r.delivery_info or {}),
        "root_id": r.root_id,
        "parent_id": r.parent_id,
        "headers": {k: v for k, v in (r.headers or {}).items() if k.startswith("x-")},
        "started": time.time(),
    }


@app.task(bind=True)
def spawn(self: Any) -> str:
    """Sends a child task from inside a task: the child's root_id/parent_id come from here."""
    return request_info.delay("child").id


@app.task(bind=True, max_retries=2)
def give_up(self: Any) -> None:
    """Retries with a doubling countdown and no exception, so the end is MaxRetriesExceededError."""
    ledger(f"give_up {self.request.retries}")
    raise self.retry(countdown=0.2 * 2**self.request.retries)


@app.task(
    bind=True,
    autoretry_for=(ConnectionError,),
    retry_backoff=0.2,
    retry_backoff_max=0.3,
    retry_jitter=False,
    max_retries=3,
)
def unreachable(self: Any) -> None:
    """Autoretry with backoff 0.2, 0.3 (capped), 0.3 (capped); then the ConnectionError stands."""
    ledger(f"unreachable {self.request.retries}")
    raise ConnectionError("service down")


@app.task(ignore_result=True)
def quiet(tag: str) -> str:
    ledger(f"quiet {tag}")
    return tag


@app.task(serializer="pickle")
def pickled(x: int, y: int) -> int:
    return x + y


@app.task(bind=True, default_retry_delay=0.5, max_retries=1)
def default_delay(self: Any) -> int:
    """retry() without countdown/eta waits default_retry_delay."""
    ledger(f"default_delay {self.request.retries}")
    if self.request.retries == 0:
        raise self.retry()
    return self.request.retries


@app.task(bind=True)
def request_properties(self: Any) -> dict[str, Any]:
    """The message properties as the task sees them (Celery's ``self.request.properties``)."""
    return dict(self.request.properties or {})
