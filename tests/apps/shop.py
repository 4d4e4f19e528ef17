"""The app integration tests run in real worker processes.

The broker comes from ``TQCTL_BROKER`` (set by the test harness), so the same module serves
every test's private server. ``LEDGER`` names a file where tasks append one line per attempt,
so tests can count runs across processes.
"""

from __future__ import annotations

import os
import sys
import time

from engine import App
from engine.exceptions import SoftTimeLimitExceeded

app = App("shop")
app.conf.tqctl_owner_timeout = float(os.environ.get("TQ_OWNER_TIMEOUT", "3"))
app.conf.tqctl_heartbeat_interval = 0.5


def ledger(line: str) -> None:
    path = os.environ.get("LEDGER")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{line} {os.getpid()} {time.time():.3f}\n")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(bind=True)
def record(self, tag: str) -> str:
    ledger(f"{tag} {self.request.id}")
    return tag


@app.task(bind=True, acks_late=True)
def slow_late(self, seconds: float, tag: str = "slow") -> str:
    ledger(f"start {tag} {self.request.id}")
    time.sleep(seconds)
    ledger(f"end {tag} {self.request.id}")
    return tag


@app.task(bind=True)
def slow_early(self, seconds: float, tag: str = "slow") -> str:
    ledger(f"start {tag} {self.request.id}")
    time.sleep(seconds)
    ledger(f"end {tag} {self.request.id}")
    return tag


@app.task(bind=True, max_retries=3)
def flaky(self, succeed_on: int) -> int:
    ledger(f"try {self.request.retries}")
    if self.request.retries < succeed_on:
        raise self.retry(exc=ValueError(f"attempt {self.request.retries}"), countdown=0.1)
    return self.request.retries


@app.task(bind=True, autoretry_for=(KeyError,), retry_backoff=0.1, retry_jitter=False, max_retries=2)
def always_keyerror(self) -> None:
    ledger(f"try {self.request.retries}")
    raise KeyError("missing")


@app.task(soft_time_limit=0.5)
def soft_limited() -> str:
    try:
        time.sleep(5)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "not interrupted"


@app.task(time_limit=0.5)
def hard_limited() -> str:
    time.sleep(10)
    return "not killed"


@app.task(rate_limit="5/s")
def limited(i: int) -> float:
    return time.time()


@app.task(queue="high")
def urgent() -> str:
    return os.environ.get("TQ_WORKER_NAME", "?")


@app.task
def where() -> str:
    return os.environ.get("TQ_WORKER_NAME", "?")


@app.task
def pid() -> int:
    return os.getpid()


@app.task
def loaded(names: list[str]) -> list[str]:
    """Which of ``names`` the process running this task has imported."""
    return [name for name in names if name in sys.modules]


@app.task(bind=True)
def die(self) -> None:
    ledger(f"die {self.request.id}")
    os._exit(1)
