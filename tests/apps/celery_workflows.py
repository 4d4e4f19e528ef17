"""tests/apps/workflows.py's plain tasks on a REAL Celery 5.7 app (client, or ``celery worker``)."""

from __future__ import annotations

import os

from celery import Celery

from tests.apps import workflows
from tests.apps.celery_canvas import celery_url

URL = celery_url(os.environ.get("TQCTL_BROKER"))

app = Celery("celery_workflows", broker=URL, backend=URL, set_as_current=False)
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=True, task_default_queue="celery")

for _name, _fun in workflows.PLAIN.items():
    app.task(name=_name)(_fun)
