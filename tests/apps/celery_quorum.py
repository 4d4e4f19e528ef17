"""tests/apps/celery_interop.py with quorum queues: Celery 5.5+ then runs its native delayed
delivery bootstep (declares the ``celery_delayed_*`` levels at start)."""

from __future__ import annotations

from tests.apps.celery_interop import app

app.conf.task_default_queue_type = "quorum"
