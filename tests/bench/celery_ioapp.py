"""Celery 5.7 twin of ``tqctl.examples.ioapp`` for ``tests/bench/io_compare.py`` (run with
``celery worker -P gevent``, which patches ``urllib``). Broker and backend from ``BENCH_BROKER_URL``."""

from __future__ import annotations

import os
import urllib.request

from celery import Celery

BROKER = os.environ.get("BENCH_BROKER_URL") or "redis://127.0.0.1:6379/0"
QUEUE = os.environ.get("TQCTL_BENCH_QUEUE", "tqctl.bench.io")

app = Celery("celery_ioapp", broker=BROKER, backend=BROKER)
app.conf.update(task_default_queue=QUEUE, broker_connection_retry_on_startup=True)


@app.task(name="tqctl.examples.ioapp.wait_http_sync")
def wait_http_sync(path: str = "") -> int:
    with urllib.request.urlopen(os.environ["TQCTL_IO_URL"] + path, timeout=60) as reply:
        return len(reply.read())


@app.task(name="tqctl.examples.ioapp.noop", ignore_result=True)
def noop(i: int = 0) -> None:
    """The enqueue measurement's task (never run)."""
