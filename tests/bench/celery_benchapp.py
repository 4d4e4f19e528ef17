"""Celery 5.7 twin of ``tqctl.examples.benchapp`` for ``tests/bench/compare.py``.

Same reliability settings as the engine's bench app: late acks, task events on. Broker and
result backend come from ``BENCH_BROKER_URL`` / ``BENCH_BACKEND_URL`` (falling back to
``TQCTL_BROKER``), the queue from ``TQCTL_BENCH_QUEUE``; ``BENCH_CONFIRM_PUBLISH=1`` turns on
publisher confirms (RabbitMQ).
"""

from __future__ import annotations

import os

from celery import Celery

BROKER = os.environ.get("BENCH_BROKER_URL") or os.environ.get("TQCTL_BROKER") or "redis://127.0.0.1:6379/0"
BACKEND = os.environ.get("BENCH_BACKEND_URL") or BROKER
QUEUE = os.environ.get("TQCTL_BENCH_QUEUE", "tqctl.bench")

app = Celery("celery_benchapp", broker=BROKER, backend=BACKEND)
app.conf.update(
    task_acks_late=True,
    worker_send_task_events=True,
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
)
if os.environ.get("BENCH_CONFIRM_PUBLISH") == "1":
    # On RabbitMQ: ``delay()`` returns once the broker has the message, as the engine's does.
    app.conf.broker_transport_options = {"confirm_publish": True}


@app.task(ignore_result=True)
def noop() -> None:
    """Does nothing; its result is not stored."""


@app.task
def noop_result() -> None:
    """Does nothing; its result (None) is stored in the result backend."""
