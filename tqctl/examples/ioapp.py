"""The app ``tqctl bench --io`` runs: tasks that wait on a local HTTP server (``TQCTL_IO_URL``).

``wait_http`` is ``async def`` (``-P asyncio``); ``wait_http_sync`` is the same wait with blocking
``urllib`` (``-P gevent`` patches it; Celery's twin is tests/bench/celery_ioapp.py). The queue
comes from ``TQCTL_BENCH_QUEUE`` (default ``tqctl.bench.io``), so a benchmark never takes real work.
"""

from __future__ import annotations

import asyncio
import os
import urllib.request

from engine import App

QUEUE = os.environ.get("TQCTL_BENCH_QUEUE", "tqctl.bench.io")

app = App("ioapp")
app.conf.task_default_queue = QUEUE


async def http_get(url: str) -> bytes:
    """A bare HTTP/1.0 GET on asyncio streams: the benchmark measures the pool, not a client library."""
    host, _, rest = url.removeprefix("http://").partition("/")
    name, _, port = host.partition(":")
    reader, writer = await asyncio.open_connection(name, int(port or 80))
    writer.write(f"GET /{rest} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data.split(b"\r\n\r\n", 1)[-1]


@app.task
async def wait_http(path: str = "") -> int:
    return len(await http_get(os.environ["TQCTL_IO_URL"] + path))


@app.task
def wait_http_sync(path: str = "") -> int:
    with urllib.request.urlopen(os.environ["TQCTL_IO_URL"] + path, timeout=60) as reply:
        return len(reply.read())


@app.task(ignore_result=True)
def noop(i: int = 0) -> None:
    """The enqueue measurements' task (never run: its queue is emptied after)."""
