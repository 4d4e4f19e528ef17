"""The app beat tests run in subprocesses: a 1-second entry, a per-minute crontab, an hourly one.

No worker is needed: tests read the published messages straight off the queues. The broker comes
from ``TQCTL_BROKER``; ``TQ_BEAT_LEASE`` sets the leader lease (3 s by default, short for tests).
"""

from __future__ import annotations

import os

from engine import App
from engine.schedules import crontab

app = App("beatapp")
app.conf.tqctl_beat_lease = float(os.environ.get("TQ_BEAT_LEASE", "3"))
app.conf.timezone = "Europe/Paris"
app.conf.beat_schedule = {
    "every-second": {"task": "beatapp.tick", "schedule": 1.0, "args": (1,)},
    "every-minute": {"task": "beatapp.minutely", "schedule": crontab(minute="*")},
    "hourly-high": {
        "task": "beatapp.cleanup",
        "schedule": crontab(minute=0, hour="*/1"),
        "kwargs": {"days": 30},
        "options": {"queue": "high"},
    },
}


@app.task
def tick(n: int) -> int:
    return n


@app.task
def minutely() -> None:
    return None


@app.task
def cleanup(days: int) -> int:
    return days
