"""The app the SQS tests run: broker from ``TQCTL_BROKER`` (``sqs://``), results in Redis.

``SQS_TEST_OPTIONS`` is the JSON of ``broker_transport_options`` (each test's own queue name
prefix, a short visibility timeout); ``SQS_TEST_BACKEND`` names the result backend (the harness
keeps ``TQCTL_BACKEND`` out of workers' environments); ``LEDGER`` is a file where tasks append
one line per attempt. Credentials and the endpoint come from the AWS_* variables, as boto3 reads them.
"""

from __future__ import annotations

import json
import os
import time

from engine import App

app = App("sqs_app")
app.conf.result_backend = os.environ.get("SQS_TEST_BACKEND")
app.conf.broker_transport_options = json.loads(os.environ.get("SQS_TEST_OPTIONS") or "{}")


def ledger(line: str) -> None:
    path = os.environ.get("LEDGER")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{line} {os.getpid()}\n")


@app.task
def add(x: int, y: int) -> int:
    ledger(f"add {x} {y}")
    return x + y


@app.task(bind=True, acks_late=True)
def slow_late(self, seconds: float) -> str:
    """Slow on its first delivery (the test kills the worker then), quick when redelivered."""
    again = bool(self.request.delivery_info.get("redelivered"))
    ledger(f"start {self.request.id} redelivered={again}")
    time.sleep(0.1 if again else seconds)
    ledger(f"end {self.request.id}")
    return "done"
