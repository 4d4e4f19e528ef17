"""Celery's in-process scheduler API (``engine.beat.Scheduler``): ``add`` entries, ``tick()``.

The clock is the app's (``app.now``), moved by hand here: the deadlines are Celery 5.7's across
DST changes (a relative daily entry runs at local midnight; an hourly one across a gap runs at
the end of the gap), and one entry whose schedule raises does not stop the others.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine import App
from engine.beat import ScheduleEntry, Scheduler
from engine.exceptions import ImproperlyConfigured

UTC = dt.timezone.utc


class Recording(Scheduler):
    """Records what it would send instead of publishing (the sending itself is App.send_task's)."""

    def __init__(self, app: Any, **kw: Any) -> None:
        super().__init__(app, lazy=True, **kw)
        self.sent: list[tuple[str | None, dt.datetime]] = []

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        self.sent.append((entry.name, self.app.now()))


class Clock:
    def __init__(self, start: dt.datetime) -> None:
        self.at = start

    def __call__(self) -> dt.datetime:
        return self.at


CASES = [
    # a relative daily entry on the night the clocks go back: at local midnight, not 00:30
    ("America/New_York", dt.timedelta(days=1), True, dt.datetime(2026, 11, 1, 0, 30), dt.datetime(2026, 11, 2)),
    # hourly across the spring-forward gap (02:00 -> 03:00): 03:00, the end of the gap
    ("America/New_York", dt.timedelta(hours=1), True, dt.datetime(2026, 3, 8, 1, 30), dt.datetime(2026, 3, 8, 3)),
    # Cairo's midnight does not exist that night: the deadline is the end of the gap, 01:00
    ("Africa/Cairo", dt.timedelta(days=1), True, dt.datetime(2026, 4, 23, 23, 30), dt.datetime(2026, 4, 24, 1)),
    # not relative: 24 h of elapsed time, whatever the wall clock says
    (
        "America/New_York",
        dt.timedelta(days=1),
        False,
        dt.datetime(2026, 11, 1, 0, 30),
        dt.datetime(2026, 11, 1, 23, 30),
    ),
]


@pytest.mark.parametrize("zone,interval,relative,last_run,due", CASES)
def test_an_entry_is_sent_once_at_its_deadline(
    zone: str, interval: dt.timedelta, relative: bool, last_run: dt.datetime, due: dt.datetime
) -> None:
    app = App("beat-api")
    tz = ZoneInfo(zone)
    app.conf.timezone = tz
    clock = Clock(last_run.replace(tzinfo=tz))
    app.now = clock  # type: ignore[method-assign]
    scheduler = Recording(app)
    scheduler.add(name="e", task="t.add", schedule=interval, relative=relative, last_run_at=clock.at)
    due_utc = due.replace(tzinfo=tz).astimezone(UTC)

    assert scheduler.tick() > 0
    clock.at = (due_utc - dt.timedelta(seconds=1)).astimezone(tz)
    assert scheduler.tick() > 0 and scheduler.sent == []
    clock.at = due_utc.astimezone(tz)
    assert scheduler.tick() == 0
    assert [name for name, _ in scheduler.sent] == ["e"]
    assert scheduler.schedule["e"].total_run_count == 1
    assert scheduler.schedule["e"].last_run_at.astimezone(UTC) == due_utc
    clock.at = (due_utc + dt.timedelta(seconds=1)).astimezone(tz)
    assert scheduler.tick() > 0 and len(scheduler.sent) == 1  # the same deadline is not sent twice


def test_an_entry_whose_schedule_raises_does_not_stop_the_others() -> None:
    app = App("beat-api")
    scheduler = Recording(app)
    last = dt.datetime(2022, 12, 5, 10, 20)
    failing = scheduler.add(name="failing", task="t.a", schedule=dt.timedelta(seconds=1), last_run_at=last)
    scheduler.add(name="healthy", task="t.b", schedule=dt.timedelta(seconds=1), last_run_at=last)

    def broken(_last_run_at: dt.datetime) -> Any:
        raise TypeError("cannot calculate the next run")

    failing.schedule.is_due = broken
    for _ in range(3):
        scheduler.tick()
    sent = [name for name, _ in scheduler.sent]
    assert sent and set(sent) == {"healthy"}
    assert scheduler.schedule["failing"].total_run_count == 0


def test_beat_schedule_setting_is_read_unless_lazy() -> None:
    app = App("beat-api", beat_schedule={"every-minute": {"task": "t.add", "schedule": 60.0, "args": (1, 2)}})
    entry = Scheduler(app).schedule["every-minute"]
    assert (entry.task, tuple(entry.args), entry.schedule.seconds) == ("t.add", (1, 2), 60.0)
    assert Scheduler(app, lazy=True).schedule == {}
    app.conf.beat_schedule = {"broken": {"schedule": 60.0}}
    with pytest.raises(ImproperlyConfigured, match="broken"):
        Scheduler(app)


@pytest.mark.parametrize("deadline,due", [(None, True), (1800, True), (600, False)])
def test_a_missed_cron_run_is_caught_up_only_within_the_starting_deadline(deadline: int | None, due: bool) -> None:
    """Slots at :00 and :45; last run 08:45, now 10:20: the latest missed slot, 10:00, is 20 min old."""
    from engine.schedules import crontab

    app = App("beat-api", beat_cron_starting_deadline=deadline)
    now = dt.datetime(2022, 12, 5, 10, 20, tzinfo=UTC)
    cron = crontab(minute="0,45", nowfun=lambda: now, app=app)
    assert cron.is_due(dt.datetime(2022, 12, 5, 8, 45, tzinfo=UTC)) == (due, 25 * 60.0)  # next: 10:45
    scheduler = Recording(app)
    scheduler.add(name="cron", task="t.add", schedule=cron, last_run_at=dt.datetime(2022, 12, 5, 8, 45, tzinfo=UTC))
    scheduler.tick()
    assert [name for name, _ in scheduler.sent] == (["cron"] if due else [])
