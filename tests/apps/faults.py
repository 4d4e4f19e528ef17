"""Tasks for the fault-injection suite (``tests/faults/``): each run is counted per task id in a
separate Redis-compatible server named by ``FAULT_COUNTER_URL``, which the faults never touch, so a
lost or duplicated task shows up in the counts whatever the engine believes.
"""

from __future__ import annotations

import os
import time

import redis

from engine import App

app = App("faults")
app.conf.tqctl_owner_timeout = 3.0
app.conf.tqctl_heartbeat_interval = 0.5
app.conf.result_expires = int(os.environ.get("FAULT_RESULT_EXPIRES", "86400"))  # the soak checks expiry

RUNS = "fault:runs"
_counter: redis.Redis | None = None


def _store() -> redis.Redis:
    """One connection per process, made after fork (prefork children must not share a socket)."""
    global _counter
    if _counter is None:
        _counter = redis.Redis.from_url(os.environ["FAULT_COUNTER_URL"])
    return _counter


def runs(url: str) -> dict[str, int]:
    """Task id -> how many times it started, read from the counter store."""
    client = redis.Redis.from_url(url)
    return {k.decode(): int(v) for k, v in client.hgetall(RUNS).items()}


@app.task(bind=True)
def count(self, seconds: float = 0.0) -> str:
    _store().hincrby(RUNS, self.request.id, 1)
    if seconds:
        time.sleep(seconds)
    return self.request.id


@app.task(bind=True, acks_late=True)
def count_late(self, seconds: float = 0.0) -> str:
    _store().hincrby(RUNS, self.request.id, 1)
    if seconds:
        time.sleep(seconds)
    return self.request.id
