"""Tasks for the I/O pool tests (tests/integration/test_io_pools.py): sync and ``async def`` tasks
that wait on sleeps or on a local HTTP server named by ``AIO_HTTP`` (started by the test)."""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request

from engine import App
from engine.exceptions import SoftTimeLimitExceeded
from tqctl.examples.ioapp import http_get  # the benchmark app's bare asyncio GET

app = App("aio")
app.conf.tqctl_owner_timeout = float(os.environ.get("TQ_OWNER_TIMEOUT", "3"))
app.conf.tqctl_heartbeat_interval = 0.5


def ledger(line: str) -> None:
    path = os.environ.get("LEDGER")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{line} {os.getpid()}\n")


@app.task
def nap(seconds: float, tag: int = 0) -> int:
    time.sleep(seconds)
    return tag


@app.task
async def anap(seconds: float, tag: int = 0) -> int:
    await asyncio.sleep(seconds)
    return tag


@app.task(bind=True)
async def whoami(self) -> dict[str, object]:
    """The request is visible inside the coroutine, and the loop really runs."""
    await asyncio.sleep(0)
    return {"id": self.request.id, "loop": type(asyncio.get_running_loop()).__module__}


@app.task
async def aboom(message: str) -> None:
    await asyncio.sleep(0)
    raise ValueError(message)


@app.task(bind=True, max_retries=3)
async def aflaky(self, fails: int) -> int:
    await asyncio.sleep(0)
    if self.request.retries < fails:
        raise self.retry(countdown=0.2)
    return self.request.retries


@app.task(bind=True, soft_time_limit=0.5)
async def asoft(self, seconds: float) -> str:
    try:
        await asyncio.sleep(seconds)
    except SoftTimeLimitExceeded:
        ledger(f"soft {self.request.id}")
        return "caught soft"
    return "no limit"


@app.task(bind=True, time_limit=0.5)
async def ahard(self, seconds: float) -> str:
    try:
        await asyncio.sleep(seconds)
    finally:
        ledger(f"cleanup {self.request.id}")
    return "no limit"


@app.task(bind=True)
async def alongrun(self, seconds: float) -> str:
    ledger(f"start {self.request.id}")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        ledger(f"cancelled {self.request.id}")
        raise
    return "done"


@app.task(bind=True, acks_late=True)
async def alate(self, seconds: float, tag: int) -> int:
    ledger(f"start {tag}")
    await asyncio.sleep(seconds)
    return tag


@app.task
async def afetch(tag: int) -> int:
    body = await http_get(os.environ["AIO_HTTP"])
    return tag if body == b"ok" else -1


@app.task
def fetch(tag: int) -> int:
    with urllib.request.urlopen(os.environ["AIO_HTTP"], timeout=30) as reply:
        return tag if reply.read() == b"ok" else -1


@app.task(bind=True, soft_time_limit=0.5)
def soft(self, seconds: float) -> str:
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        return "caught soft"
    return "no limit"


@app.task(bind=True, time_limit=0.5)
def hard(self, seconds: float) -> str:
    time.sleep(seconds)
    return "no limit"


@app.task(bind=True)
def longrun(self, seconds: float) -> str:
    ledger(f"start {self.request.id}")
    time.sleep(seconds)
    ledger(f"end {self.request.id}")
    return "done"


@app.task(bind=True, acks_late=True)
def late(self, seconds: float, tag: int) -> int:
    ledger(f"start {tag}")
    time.sleep(seconds)
    return tag
