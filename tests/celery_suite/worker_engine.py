"""The app our worker runs for the suite: ``tqctl worker -A tests.celery_suite.worker_engine``.

The suite's ``tasks.py`` (the engine tree's copy, first on ``PYTHONPATH``) declares everything
with ``shared_task``, so this module only creates the app with the suite's settings.
"""

from __future__ import annotations

import os

from engine import App

app = App("suite", broker=os.environ["TEST_BROKER"], backend=os.environ["TEST_BACKEND"], result_extended=True)

import t.integration.tasks as tasks  # noqa: E402 - shared_task binds to the app made above

from tests.celery_suite.compat import STAND_INS  # noqa: E402

if STAND_INS:
    print(f"celery_suite stand-ins used (the engine lacks them): {sorted(STAND_INS)}", flush=True)
if hasattr(app, "register_task"):  # what the conftest's ``celery_class_tasks`` does on Celery's side
    app.register_task(tasks.ClassBasedAutoRetryTask)
