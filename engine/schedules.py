"""Beat schedules: *when* a periodic entry is due, as pure functions of time.

A schedule turns "now" into discrete **slots**: timezone-aware UTC instants at which an entry
is due. Slots are idempotent -- every process computes the same slots from the same schedule
-- so beat can enforce "each slot fires exactly once" with one key per (entry, slot), and can
catch up slots that fell due while no beat leader ran. Nothing here does I/O or keeps state.

* ``schedule(10)`` / ``as_schedule(10.0)``: every 10 seconds, on a grid anchored at the Unix
  epoch (or a given ``anchor``), never "10 seconds after the last run", so slots don't drift.
* ``crontab(minute=0, hour="*/1")``: Celery's crontab syntax, evaluated on the wall clock of
  ``tz`` (an IANA name; ``with_default_tz`` fills in the app's ``timezone``; default UTC).
  Parsing and wall-clock matching are done by croniter; ``day_of_week`` counts 0 = Sunday, and
  ``day_of_month``/``day_of_week`` must *both* match when both are restricted, as in Celery.

Daylight-saving rule (crontab only; intervals count real elapsed time and never see DST):
(1) spring-forward: a matching wall-clock time that does not exist that day (02:30 in
Europe/Paris on the last Sunday of March) fires once, at the first instant after the gap
(03:00 local); if the schedule also matches that instant (e.g. 03:00 itself) it is the same
slot and fires once. (2) fall-back: a matching wall-clock time that occurs twice (02:30 in
Europe/Paris on the last Sunday of October) fires once, at its first occurrence (summer time,
``fold=0``), never at the second. (3) schedules whose hour field covers all 24 hours (``*``,
``*/1``, ``0-23``; i.e. "every hour" or "every N minutes") instead follow real elapsed time:
they fire at every real instant at which the local clock shows a matching time, so the
skipped hour simply does not happen and the repeated hour runs twice; with a one-hour DST
shift, ``minute=0`` fires exactly once per real hour all year and ``minute="*/15"`` every 15
real minutes. In every case slots are strictly increasing and strictly after ``after``.
"""

from __future__ import annotations

import heapq
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone, tzinfo
from itertools import islice, takewhile
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

__all__ = ["Schedule", "as_schedule", "crontab", "schedule"]

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY = timedelta(days=1)
_US = timedelta(microseconds=1)

Cronspec = int | str | Iterable[int]

# Cron order, which is also the order of the expression croniter parses.
_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
_HINTS = {
    "minute": "0-59",
    "hour": "0-23",
    "day_of_month": "1-31",
    "month_of_year": "1-12 or jan-dec",
    "day_of_week": "0-6 (0=Sunday) or sun-sat",
}
# Full names and three-letter abbreviations both map to the abbreviation croniter knows.
_NAMES = {
    field: {name: name[:3] for full in names.split() for name in (full, full[:3])}
    for field, names in (
        ("day_of_week", "sunday monday tuesday wednesday thursday friday saturday"),
        ("month_of_year", "january february march april may june july august september october november december"),
    )
}
# Celery's syntax only: croniter extensions (L, W, #, ?, H, @hourly, seconds) are refused so
# a schedule written here also means the same thing under Celery.
_ALLOWED = re.compile(r"[0-9a-z*/,\-]+")
_MAX_DAYS = dict(enumerate((31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31), start=1))


def _utc(value: datetime, name: str = "after") -> datetime:
    """Normalise to aware UTC; naive datetimes are refused because their zone is a guess."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


class Schedule(ABC):
    """What beat needs from any schedule: deterministic slots, and text/JSON to show it."""

    @abstractmethod
    def iter_slots(self, after: datetime) -> Iterator[datetime]:
        """Yield every slot strictly after ``after``, in increasing order, as aware UTC."""

    @abstractmethod
    def describe(self) -> str:
        """Short human text, e.g. ``every 10s`` or ``cron 0 */1 * * *``."""

    @abstractmethod
    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description for listings."""

    @abstractmethod
    def _key(self) -> tuple[Any, ...]:
        """Identity used for equality, so beat can tell whether an entry's schedule changed."""

    # Celery's schedule API for beat.Scheduler (engine.schedule_due): whose clock, and is it due.
    nowfun: Callable[[], datetime] | None = None
    app: Any = None

    def next_slot(self, after: datetime) -> datetime:
        """The first slot strictly after ``after`` (aware UTC)."""
        return next(self.iter_slots(after))

    def now(self) -> datetime:
        from engine.schedule_due import now_of

        return now_of(self)

    def is_due(self, last_run_at: datetime) -> tuple[bool, float]:
        """Celery's contract: ``(due now?, seconds until the next check)``."""
        from engine.schedule_due import is_due

        return is_due(self, last_run_at)

    def slots_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Slots in (start, end], oldest first, at most ``limit`` of them (catch-up after a gap).

        A full list means more slots may follow; ask again from its last element.
        """
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        end = _utc(end, "end")
        if limit == 0 or end <= _utc(start, "start"):
            return []
        return list(islice(takewhile(lambda slot: slot <= end, self.iter_slots(start)), limit))

    def with_tz(self, name: str | None) -> Schedule:
        """A copy evaluated in timezone ``name``; interval schedules ignore time zones."""
        return self

    def with_default_tz(self, name: str | None) -> Schedule:
        """Like ``with_tz`` but keeps a time zone the user set explicitly (the app default)."""
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


class schedule(Schedule):  # lowercase: Celery's public name
    """Every ``run_every`` (seconds or timedelta), on a grid ``anchor + k * run_every``.

    The grid (rather than "last run + interval") is what lets two beat processes agree on
    slot times and lets a restarted beat know exactly which slots it missed.
    """

    def __init__(self, run_every: float | timedelta, anchor: datetime | None = None) -> None:
        if isinstance(run_every, timedelta):
            interval = run_every
        elif isinstance(run_every, (int, float)) and not isinstance(run_every, bool):
            if not math.isfinite(run_every):
                raise ValueError(f"schedule run_every must be finite, got {run_every!r}")
            interval = timedelta(seconds=run_every)
        else:
            raise TypeError(f"schedule run_every must be seconds or a timedelta, got {run_every!r}")
        if interval < _US:
            raise ValueError(f"schedule run_every must be positive, got {run_every!r}")
        self.run_every = interval
        self.anchor = EPOCH if anchor is None else _utc(anchor, "anchor")
        self._step = interval // _US  # integer microseconds: exact, no float drift

    @property
    def seconds(self) -> float:
        return self.run_every.total_seconds()

    def iter_slots(self, after: datetime) -> Iterator[datetime]:
        k = (_utc(after) - self.anchor) // _US // self._step + 1  # floor, also before anchor
        while True:
            yield self.anchor + timedelta(microseconds=k * self._step)
            k += 1

    def describe(self) -> str:
        us = self._step
        for unit, size in (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000)):
            if us % size == 0:
                return f"every {us // size}{unit}"
        return "every " + f"{us / 1e6:.6f}".rstrip("0").rstrip(".") + "s"

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": "interval",
            "seconds": self.seconds,
            "anchor": self.anchor.isoformat(),
            "description": self.describe(),
        }

    def _key(self) -> tuple[Any, ...]:
        return ("interval", self._step, self.anchor)

    def __repr__(self) -> str:
        anchor = "" if self.anchor == EPOCH else f", anchor={self.anchor!r}"
        return f"schedule(run_every={self.seconds!r}{anchor})"


# What "*" covers in each field, in croniter's order (minute, hour, day of month, month, day of week).
_SPANS = (range(60), range(24), range(1, 32), range(1, 13), range(7))


def _as_set(values: list[Any], span: range) -> set[int]:
    """One field croniter expanded, as Celery's crontab holds it: the ints it matches (Sunday 0)."""
    if values == ["*"]:
        return set(span)
    return {int(v) % 7 if span == _SPANS[4] else int(v) for v in values}


def _cronfield(name: str, value: Cronspec) -> str:
    """One Celery cron field as croniter text; errors are one line naming the field."""

    def bad(why: str) -> ValueError:
        return ValueError(f"invalid crontab {name}={value!r}: {why} (expected {_HINTS[name]})")

    if isinstance(value, bool):
        raise bad("not a number or cron pattern")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip().lower()
    elif isinstance(value, Iterable):
        items = list(value)
        if not items or not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
            raise bad("a collection must hold integers")
        text = ",".join(str(i) for i in sorted(set(items)))
    else:
        raise bad("not a number or cron pattern")
    if not _ALLOWED.fullmatch(text):
        raise bad("unsupported syntax")
    names = _NAMES.get(name, {})
    for word in re.findall(r"[a-z]+", text):
        if word not in names:
            raise bad(f"unknown name {word!r}")
    text = re.sub(r"[a-z]+", lambda m: names[m.group(0)], text)
    alone = " ".join(text if field == name else "*" for field in _FIELDS)
    try:
        croniter(alone)
    except (ValueError, TypeError, KeyError) as exc:  # CroniterError subclasses ValueError
        raise bad("out of range or malformed") from exc
    return text


def _zone(name: str | None) -> tzinfo:
    if name is None or name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"invalid crontab tz={name!r}: unknown IANA time zone") from exc


def _offset(zone: tzinfo, instant: datetime) -> timedelta:
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def _gap_end(zone: tzinfo, before: datetime, after: datetime) -> datetime:
    """First instant with the post-transition offset, bisected to the second in (before, after]."""
    lo, hi = int(before.timestamp()), math.ceil(after.timestamp())
    old = _offset(zone, before)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(zone, datetime.fromtimestamp(mid, UTC)) == old:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


class crontab(Schedule):  # lowercase: Celery's public name
    """Celery-compatible cron schedule on the wall clock of ``tz`` (see the module's DST rule)."""

    def __init__(
        self,
        minute: Cronspec = "*",
        hour: Cronspec = "*",
        day_of_week: Cronspec = "*",
        day_of_month: Cronspec = "*",
        month_of_year: Cronspec = "*",
        tz: str | None = None,
        nowfun: Callable[[], datetime] | None = None,
        app: Any = None,
    ) -> None:
        self.nowfun, self.app = nowfun, app  # Celery's: a clock of its own, the app whose settings apply
        given = {
            "minute": minute,
            "hour": hour,
            "day_of_week": day_of_week,
            "day_of_month": day_of_month,
            "month_of_year": month_of_year,
        }
        fields = {name: _cronfield(name, value) for name, value in given.items()}
        # Celery's: the text given under _orig_<field>, each field itself the set of ints it matches.
        self._orig_minute, self._orig_hour = fields["minute"], fields["hour"]
        self._orig_day_of_week, self._orig_day_of_month = fields["day_of_week"], fields["day_of_month"]
        self._orig_month_of_year = fields["month_of_year"]
        self.expr = " ".join(fields[name] for name in _FIELDS)
        expanded, _ = croniter.expand(self.expr)
        self.minute, self.hour, self.day_of_month, self.month_of_year, self.day_of_week = (
            _as_set(values, span) for values, span in zip(expanded, _SPANS, strict=False)
        )
        days, months = expanded[2], expanded[3]
        if days != ["*"]:
            months = list(range(1, 13)) if months == ["*"] else months
            if not any(int(d) <= _MAX_DAYS[int(m)] for d in days for m in months):
                raise ValueError(
                    f"invalid crontab day_of_month={day_of_month!r}: never occurs in month_of_year={month_of_year!r}"
                )
        self.tz = tz
        self._zone = _zone(tz)
        # Rule (3): an hour field croniter expands to "*" means every hour of the day.
        self._real_time = expanded[1] == ["*"]

    def with_tz(self, name: str | None) -> crontab:
        return crontab(
            self._orig_minute,
            self._orig_hour,
            self._orig_day_of_week,
            self._orig_day_of_month,
            self._orig_month_of_year,
            tz=name,
            nowfun=self.nowfun,
            app=self.app,
        )

    def with_default_tz(self, name: str | None) -> crontab:
        return self if self.tz is not None else self.with_tz(name)

    def _instants(self, wall: datetime) -> list[datetime]:
        """The UTC instants a matching naive wall-clock time stands for, per the DST rule."""
        first = wall.replace(tzinfo=self._zone).astimezone(UTC)
        second = wall.replace(tzinfo=self._zone, fold=1).astimezone(UTC)
        if first == second:
            return [first]
        if first.astimezone(self._zone).replace(tzinfo=None) == wall:  # occurs twice
            return [first, second] if self._real_time else [first]
        # Does not exist: fold=1 applies the new offset (lands before the jump), fold=0 after.
        return [] if self._real_time else [_gap_end(self._zone, second, first)]

    def iter_slots(self, after: datetime) -> Iterator[datetime]:
        after = _utc(after)
        zone = self._zone
        # Start low enough that no wall time whose instant is > after is missed, even when
        # after sits in a repeated hour (its local reading is then ahead of earlier slots).
        low = min(_offset(zone, after + d) for d in (-_DAY, timedelta(0), _DAY))
        walls = croniter(self.expr, (after + low).replace(tzinfo=None), day_or=False)
        pending: list[datetime] = []
        last = after
        while True:
            wall = walls.get_next(datetime)
            for instant in self._instants(wall):
                if instant > last:
                    heapq.heappush(pending, instant)
            # Later wall times map to instants after wall - (largest nearby offset), so
            # everything up to there is final and can be released in order.
            approx = wall.replace(tzinfo=UTC)
            bound = approx - max(_offset(zone, approx + d) for d in (-_DAY, _DAY))
            while pending and pending[0] <= bound:
                slot = heapq.heappop(pending)
                if slot > last:  # equal instants are one slot (rule 1)
                    last = slot
                    yield slot

    def describe(self) -> str:
        return f"cron {self.expr}" + (f" ({self.tz})" if self.tz else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": "crontab",
            "expr": self.expr,
            "minute": self._orig_minute,
            "hour": self._orig_hour,
            "day_of_week": self._orig_day_of_week,
            "day_of_month": self._orig_day_of_month,
            "month_of_year": self._orig_month_of_year,
            "tz": self.tz,
            "description": self.describe(),
        }

    def _key(self) -> tuple[Any, ...]:
        return ("crontab", self.expr, self.tz)

    def __repr__(self) -> str:
        parts = [
            f"{name}={getattr(self, '_orig_' + name)!r}"
            for name in ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")
            if getattr(self, "_orig_" + name) != "*"
        ]
        if self.tz is not None:
            parts.append(f"tz={self.tz!r}")
        return f"crontab({', '.join(parts)})"


def as_schedule(value: object) -> Schedule:
    """Coerce a ``beat_schedule`` entry's ``schedule`` value (number, timedelta, our or Celery's
    schedule objects) to a ``Schedule``; Celery's are recognised by shape, not imported."""
    if isinstance(value, Schedule):
        return value
    if isinstance(value, (int, float, timedelta)) and not isinstance(value, bool):
        return schedule(value)
    if hasattr(value, "_orig_minute") and hasattr(value, "_orig_day_of_week"):
        fields = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")
        return crontab(**{f: getattr(value, f"_orig_{f}") for f in fields})
    run_every = getattr(value, "run_every", None)
    if isinstance(run_every, timedelta):
        return schedule(run_every)
    raise TypeError(f"unsupported beat schedule {value!r}: use seconds, a timedelta, schedule(...) or crontab(...)")
