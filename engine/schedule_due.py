"""``schedule.is_due(last_run_at)`` for ``engine.schedules`` objects: Celery's contract, which
``beat.Scheduler`` (and custom schedulers written for Celery) ask of every schedule.

Times without a zone are taken as UTC, as Celery's beat takes them. With
``beat_cron_starting_deadline`` set, a run missed by more than that many seconds is skipped
(not caught up) and the entry waits for its next slot.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from engine.interval_due import UTC, aware, schedstate


def now_of(schedule: Any) -> dt.datetime:
    """The schedule's clock: its ``nowfun``, else its app's ``now()``, else the system's."""
    if schedule.nowfun is not None:
        return schedule.nowfun()  # type: ignore[no-any-return]
    if schedule.app is not None:
        return schedule.app.now()  # type: ignore[no-any-return]
    return dt.datetime.now(UTC)


def is_due(schedule: Any, last_run_at: dt.datetime) -> schedstate:
    """``(True, seconds to the slot after now)`` when a slot has passed since ``last_run_at``;
    ``(False, seconds to the next slot)`` otherwise."""
    now = aware(now_of(schedule), UTC).astimezone(UTC)
    left = (schedule.next_slot(aware(last_run_at, UTC)) - now).total_seconds()
    due = left <= 0
    deadline = schedule.app.conf.get("beat_cron_starting_deadline") if schedule.app is not None else None
    missed = False
    if deadline is not None and left < 0:
        since = now - dt.timedelta(seconds=float(deadline), microseconds=1)
        missed = schedule.next_slot(since) > now  # no slot within the deadline: too stale to run
        due = due and not missed
    if due or missed:
        left = (schedule.next_slot(now) - now).total_seconds()
    return schedstate(due, max(left, 0.0))
