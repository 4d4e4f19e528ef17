"""The app the AMQP tests run: broker from ``TQCTL_BROKER`` (RabbitMQ), results in Redis.

``AMQP_TEST_BACKEND`` names the result backend (the harness keeps ``TQCTL_BACKEND`` out of
workers' environments); ``LEDGER`` is a file where tasks append one line per attempt.
"""

from __future__ import annotations

import os
import time

from engine import App

app = App("amqp_app")
app.conf.result_backend = os.environ.get("AMQP_TEST_BACKEND")


def ledger(line: str) -> None:
    path = os.environ.get("LEDGER")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{line} {os.getpid()}\n")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True, acks_late=True)
def slow_late(self, seconds: float) -> str:
    ledger(f"start {self.request.id} redelivered={self.request.delivery_info.get('redelivered')}")
    time.sleep(seconds)
    ledger(f"end {self.request.id}")
    return "done"
