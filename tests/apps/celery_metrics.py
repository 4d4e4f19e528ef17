"""A REAL Celery 5.7 app for the exporter test: ``celery -A tests.apps.celery_metrics worker``.

Task events on (what ``celery worker -E`` does) and task-sent events from its clients, so
``tqctl metrics`` sees a plain Celery fleet as it sees ours. Broker from ``METRICS_BROKER``.
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery("celery_metrics", broker=os.environ.get("METRICS_BROKER"), set_as_current=False)
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_default_queue="celery",
    worker_send_task_events=True,
    task_send_sent_event=True,
)


@app.task(name="cm.ok")
def ok(x: int) -> int:
    return x


@app.task(name="cm.boom")
def boom() -> None:
    raise RuntimeError("boom")
