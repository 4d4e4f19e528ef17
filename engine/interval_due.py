"""When an interval schedule is next due, in the app's time zone, as Celery 5.7's beat decides.

``every(timedelta(days=1), relative=True)`` runs at each local midnight, whatever DST does in
between: a deadline that falls in a spring-forward gap moves to the end of the gap, a repeated
midnight (a fall-back at 00:00) is taken at its first occurrence after the last run. Without
``relative`` the interval is elapsed time (24 h after the last run, in UTC).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, NamedTuple

UTC = dt.timezone.utc
DAY, HOUR, MINUTE = dt.timedelta(days=1), dt.timedelta(hours=1), dt.timedelta(minutes=1)


class schedstate(NamedTuple):  # noqa: N801 - Celery's name
    is_due: bool
    next: float  # seconds until the next check


def aware(value: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """A naive time is taken as UTC (as Celery's beat does), then shown in ``zone``."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC).astimezone(zone)
    return value


def _exists(local: dt.datetime) -> bool:
    """False for a wall time inside a spring-forward gap (it does not survive a round trip)."""
    back = local.astimezone(UTC).astimezone(local.tzinfo)
    return back.replace(tzinfo=None) == local.replace(tzinfo=None)


def _out_of_gap(local: dt.datetime) -> dt.datetime:
    """A wall time in a gap, moved forward by the gap's size (02:30 in a 02:00→03:00 gap is 03:30)."""
    after = (local + DAY).utcoffset() or dt.timedelta(0)
    before = (local - DAY).utcoffset() or dt.timedelta(0)
    return local + (after - before)


def _round(local: dt.datetime, every: dt.timedelta) -> dt.datetime:
    """Down to the interval's resolution (day, hour or minute), keeping which occurrence (fold)."""
    seconds = max(every.total_seconds(), 0)
    for keep, unit in ((3, 86400), (4, 3600), (5, 60)):
        if seconds / unit >= 1.0:
            fields = (local.year, local.month, local.day, local.hour, local.minute)[:keep]
            return dt.datetime(*fields, tzinfo=local.tzinfo, fold=local.fold)  # type: ignore[arg-type,misc]
    return local


def _boundaries(local: dt.datetime, every: dt.timedelta) -> list[dt.datetime]:
    """Both UTC instants of a rounded local deadline (one when it is not repeated), a deadline in a
    gap moved to its end."""
    rounded = _round(local, every).replace(microsecond=0)
    found = []
    for fold in (0, 1):
        candidate = rounded.replace(fold=fold)
        if not _exists(candidate):
            moved = _out_of_gap(candidate)
            if moved > candidate:
                candidate = moved
        found.append(candidate.astimezone(UTC))
    return found


def deadline(start: dt.datetime, every: dt.timedelta, relative: bool) -> dt.datetime:
    """The UTC instant the run after ``start`` (aware) is due."""
    if relative and every >= DAY:
        end = start + every  # calendar days, in local wall time
    else:
        end = (start.astimezone(UTC) + every).astimezone(start.tzinfo)
    if not relative:
        return end.astimezone(UTC)
    start_utc = start.astimezone(UTC)
    candidates = _boundaries(end, every)
    if every >= DAY:
        return min((c for c in candidates if c > start_utc), default=end.astimezone(UTC))
    limit = start_utc + every
    before = [c for c in candidates if c <= limit]
    rounded = max(before) if before else min(candidates)
    if every >= MINUTE and rounded <= start_utc:
        # A rollback of part of an hour can round to before the last run: consider the next
        # clock boundary and the calendar one too, both occurrences of each.
        unit = HOUR if every >= HOUR else MINUTE
        candidates += _boundaries(end + unit, every) + _boundaries(start + every, every)
        future = [c for c in candidates if c > start_utc]
        before = [c for c in future if c <= limit]
        rounded = max(before) if before else min(future, default=limit)
    return rounded


class every:  # noqa: N801 - a schedule, lowercase as Celery's ``schedule``
    """An interval schedule with Celery's ``is_due`` contract (what ``beat.Scheduler`` asks)."""

    def __init__(
        self,
        run_every: float | dt.timedelta,
        relative: bool = False,
        nowfun: Callable[[], dt.datetime] | None = None,
        app: Any = None,
    ) -> None:
        self.run_every = run_every if isinstance(run_every, dt.timedelta) else dt.timedelta(seconds=run_every)
        self.relative = relative
        self.nowfun = nowfun
        self.app = app

    @property
    def seconds(self) -> float:
        return max(self.run_every.total_seconds(), 0.0)

    def _zone(self) -> dt.tzinfo:
        return self.app.timezone if self.app is not None else UTC

    def now(self) -> dt.datetime:
        return (self.nowfun or self.app.now)()

    def remaining_estimate(self, last_run_at: dt.datetime) -> dt.timedelta:
        zone = self._zone()
        start = aware(last_run_at, zone)
        return deadline(start, self.run_every, self.relative) - aware(self.now(), zone).astimezone(UTC)

    def is_due(self, last_run_at: dt.datetime) -> schedstate:
        """``(True, seconds to the next run)`` when due, else ``(False, seconds until due)``."""
        left = max(self.remaining_estimate(last_run_at).total_seconds(), 0.0)
        if left > 0:
            return schedstate(False, left)
        following = self.seconds
        if self.relative:  # realign on the next rounded boundary, which DST may move
            zone = self._zone()
            start = aware(self.now(), zone).astimezone(aware(last_run_at, zone).tzinfo)
            following = self.remaining_estimate(start).total_seconds()
            if following <= 0:
                following = self.seconds
        return schedstate(True, following)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, every):
            return self.run_every == other.run_every
        return self.run_every == other

    def __hash__(self) -> int:
        return hash(self.run_every)

    def __repr__(self) -> str:
        return f"<freq: {self.seconds:g}s>"
