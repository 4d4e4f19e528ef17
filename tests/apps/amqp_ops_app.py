"""The app the AMQP console and ops tests run: broker from ``TQCTL_BROKER`` (RabbitMQ), results,
history and revokes on the Redis result backend named by ``AMQP_TEST_BACKEND``."""

from __future__ import annotations

import os
from typing import Any

from engine import App

app = App("amqp_ops_app")
app.conf.result_backend = os.environ.get("AMQP_TEST_BACKEND")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def charge(order: int) -> None:
    raise ValueError(f"card declined for order {order}")


@app.task(bind=True)
def progress(self: Any, step: int) -> int:
    """Celery's custom events (``Task.send_event``) go out on the broker the worker uses."""
    self.send_event("task-progress", current=step)
    return step
