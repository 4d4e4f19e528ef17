"""A worker app for the ops CLI tests: remote control limited by an allow-list, and a task that fails once.

``worker_control_allow`` keeps ``ping``, ``revoke``, ``stats`` and ``conf``; anything else (``shutdown``)
is answered with an error and the worker keeps running. ``fail_once`` fails while its marker
file is missing and creates it, so a retry of the very same message succeeds. ``reject`` and
``retry_once`` make the worker send task-rejected and task-retried events.
"""

from __future__ import annotations

import os
from datetime import timedelta

from engine import App
from engine.exceptions import Reject
from engine.schedules import crontab

app = App("guarded")
app.conf.worker_control_allow = ["ping", "revoke", "stats", "conf"]
app.conf.api_token = "hunter2-token"  # a secret: ``inspect conf`` must show it masked
# Values JSON cannot carry (no beat runs here): ``inspect conf`` answers them as their repr
app.conf.beat_schedule = {
    "nightly": {"task": "guarded.fail_once", "schedule": crontab(hour=3, minute=0), "args": ["/nonexistent"]},
    "every-ten": {"task": "guarded.fail_once", "schedule": timedelta(seconds=10), "args": ["/nonexistent"]},
}
app.conf.tqctl_owner_timeout = 3.0
app.conf.tqctl_heartbeat_interval = 0.5


@app.task(name="guarded.fail_once")
def fail_once(marker: str, value: int = 0) -> int:
    if not os.path.exists(marker):
        with open(marker, "w") as fh:
            fh.write("failed once\n")
        raise RuntimeError(f"first attempt fails (no marker {os.path.basename(marker)} yet)")
    return value


@app.task(name="guarded.echo")
def echo(value: int) -> int:
    return value


@app.task(name="guarded.reject")
def reject() -> None:
    raise Reject("refused by the task", requeue=False)


@app.task(name="guarded.retry_once", bind=True, max_retries=1)
def retry_once(self) -> int:  # noqa: ANN001 - Celery's bound-task signature
    if self.request.retries == 0:
        raise self.retry(countdown=0.1)
    return self.request.retries
