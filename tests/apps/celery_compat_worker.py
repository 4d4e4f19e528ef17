"""tests/apps/compat_worker.py's tasks on a REAL Celery app: ``celery -A tests.apps.celery_compat_worker worker``.

Broker and backend come from ``INTEROP_BROKER`` / ``INTEROP_BACKEND``; the functions and options are
the ones our worker runs, so the two workers run identical code.
"""

from __future__ import annotations

import os

from celery import Celery

from tests.apps.compat_worker import SPECS

app = Celery("celery_compat_worker", broker=os.environ.get("INTEROP_BROKER"), backend=os.environ.get("INTEROP_BACKEND"))
app.conf.update(broker_connection_retry_on_startup=True, task_default_queue="celery")

for _name, (_fun, _options) in SPECS.items():
    app.task(**_options)(_fun)
