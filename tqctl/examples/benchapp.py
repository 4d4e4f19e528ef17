"""The app ``tqctl bench`` runs: no-op tasks under the reliable defaults it measures.

Late acks (a task is acked only after it ran, so a crash requeues it), per-worker in-flight
tracking (always on in the engine) and task events on. The broker comes from ``TQCTL_BROKER``
and results go to the broker's Redis unless ``TQCTL_BACKEND`` says otherwise; the queue from
``TQCTL_BENCH_QUEUE`` (default ``tqctl.bench``), so a benchmark never takes real work.
"""

from __future__ import annotations

import os

from engine import App

QUEUE = os.environ.get("TQCTL_BENCH_QUEUE", "tqctl.bench")

app = App("benchapp")
app.conf.task_acks_late = True
app.conf.worker_send_task_events = True
app.conf.task_default_queue = QUEUE


@app.task(ignore_result=True)
def noop() -> None:
    """Does nothing; its result is not stored (the "results ignored" drain)."""


@app.task
def noop_result() -> None:
    """Does nothing; its result (None) is stored in the result backend."""
