"""Tasks for the reliability and dead-letter tests (``tests/integration/test_reliability.py``,
``test_dead_letters.py``), on their own app so its settings never leak into ``shop``.

Settings differ from the defaults on purpose: a low delivery limit (a poison task gives up after
3 lost processes) and a small message-size limit (an oversized message is cheap to build).
``LEDGER`` names a file where tasks append ``<what> <tag> <task id> <pid> <time>`` per attempt.
"""

from __future__ import annotations

import os
import time

from engine import App

DELIVERY_LIMIT = 3
MAX_MESSAGE_BYTES = 8 * 1024

app = App("reliability")
app.conf.tqctl_owner_timeout = 3.0
app.conf.tqctl_heartbeat_interval = 0.5
app.conf.tqctl_delivery_limit = DELIVERY_LIMIT
app.conf.tqctl_max_message_bytes = MAX_MESSAGE_BYTES


def ledger(line: str) -> None:
    path = os.environ.get("LEDGER")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{line} {os.getpid()} {time.time():.3f}\n")


def _attempts(tag: str) -> int:
    """How many times a task with ``tag`` has started before, across every process."""
    path = os.environ.get("LEDGER")
    if not path:
        return 0
    with open(path) as fh:
        return sum(1 for line in fh if line.split()[:2] == ["start", tag])


def _first_long(self, tag: str, seconds: float) -> str:
    """Runs ``seconds`` on its first attempt only; any later attempt ends at once."""
    first = _attempts(tag) == 0
    ledger(f"start {tag} {self.request.id}")
    if first:
        time.sleep(seconds)
    ledger(f"end {tag} {self.request.id}")
    return tag


@app.task(bind=True, acks_late=True)
def first_long_late(self, tag: str, seconds: float = 60.0) -> str:
    return _first_long(self, tag, seconds)


@app.task(bind=True)
def first_long_early(self, tag: str, seconds: float = 60.0) -> str:
    return _first_long(self, tag, seconds)


@app.task(bind=True, acks_late=True)
def slow_late(self, tag: str, seconds: float) -> str:
    ledger(f"start {tag} {self.request.id}")
    time.sleep(seconds)
    ledger(f"end {tag} {self.request.id}")
    return tag


@app.task(bind=True, acks_late=True)
def gated_late(self, tag: str, gate: str) -> str:
    """Runs until the file ``gate`` exists, so a test decides the moment it ends."""
    ledger(f"start {tag} {self.request.id}")
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    ledger(f"end {tag} {self.request.id}")
    return tag


@app.task(bind=True)
def record(self, tag: str) -> str:
    ledger(f"run {tag} {self.request.id}")
    return tag


@app.task(bind=True, acks_late=True)
def record_late(self, tag: str) -> str:
    ledger(f"run {tag} {self.request.id}")
    return tag


@app.task(bind=True, acks_late=True)
def die_late(self, tag: str) -> None:
    ledger(f"die {tag} {self.request.id}")
    os._exit(1)


@app.task
def pid() -> list[int]:
    return [os.getpid(), os.getppid()]


@app.task
def echo(value: object) -> object:
    return value
