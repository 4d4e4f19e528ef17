"""The interop tasks on a REAL Celery app, for ``python -m celery -A tests.apps.celery_interop worker``.

Broker and backend come from ``INTEROP_BROKER`` / ``INTEROP_BACKEND`` (set by the test to the
session's server). The task functions are the ones in ``tests/apps/interop.py``, registered under
the same names and options, so the two sides run identical code.
"""

from __future__ import annotations

import os

from celery import Celery

from tests.apps.interop import SPECS

app = Celery("celery_interop", broker=os.environ.get("INTEROP_BROKER"), backend=os.environ.get("INTEROP_BACKEND"))
app.conf.update(broker_connection_retry_on_startup=True, task_default_queue="celery")

for _name, (_fun, _options) in SPECS.items():
    app.task(**_options)(_fun)
