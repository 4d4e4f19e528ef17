"""The app a real Celery 5.7 worker runs for the suite (modes ``ref`` and ``c``).

Same settings as the suite's ``celery_config``; the ``tasks.py`` is Celery's own (celery tree).
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery("suite", broker=os.environ["TEST_BROKER"], backend=os.environ["TEST_BACKEND"])
app.conf.update(
    result_extended=True,
    task_create_missing_queues=False,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=True,
)

import t.integration.tasks as tasks  # noqa: E402 - shared_task binds to the app made above

app.register_task(tasks.ClassBasedAutoRetryTask)
