"""A real Celery 5.7 app for tests/integration/test_task_api.py: a task that reports its request
(stamps, custom headers), run by a Celery worker on the session's server."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from tests.apps.celery_canvas import celery_url

URL = celery_url(os.environ.get("TQCTL_BROKER"))

app = Celery("celery_taskapi", broker=URL, backend=URL)
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=True)


@app.task(bind=True, name="celery_taskapi.context")
def context(self: Any) -> dict[str, Any]:
    r = self.request
    return {
        "stamps": r.stamps,
        "stamped_headers": sorted(r.stamped_headers or []),
        "tenant": (r.headers or {}).get("x-tenant") or r.get("x-tenant"),
        "id": r.id,
    }
