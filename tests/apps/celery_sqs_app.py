"""A real Celery 5.7 app on SQS, for the interop test: its ``add`` has the name of sqs_app's.

Broker ``sqs://`` (endpoint and dummy credentials from the AWS_* variables), the transport options
from ``SQS_TEST_OPTIONS`` and the result backend from ``SQS_TEST_BACKEND``, as tests/apps/sqs_app.py.
"""

from __future__ import annotations

import json
import os

from celery import Celery

app = Celery("celery_sqs_app", broker="sqs://", backend=os.environ.get("SQS_TEST_BACKEND"))
app.conf.broker_transport_options = json.loads(os.environ.get("SQS_TEST_OPTIONS") or "{}")
app.conf.worker_enable_remote_control = False  # SQS has no broadcast (Celery's docs say so)


@app.task(name="tests.apps.sqs_app.add")
def add(x: int, y: int) -> int:
    return x + y
