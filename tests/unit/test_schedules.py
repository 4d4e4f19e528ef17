"""Pure schedule layer: crontab parsing, anchored intervals, catch-up, and the DST rule.

No clock is mocked: every call takes the "now" it reasons about as an argument.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from engine.schedules import Schedule, as_schedule, crontab, schedule

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
MINUTE = timedelta(minutes=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def check_slots(slots: list[datetime], after: datetime) -> None:
    """The invariants every slot list must satisfy, whatever the schedule."""
    assert all(s.tzinfo is UTC for s in slots)
    assert all(s > after for s in slots), "a slot in the past"
    assert all(a < b for a, b in pairwise(slots)), "slots not strictly increasing"


def first(sched: Schedule, after: datetime, n: int) -> list[datetime]:
    slots = sched.slots_between(after, after + timedelta(days=3650), n)
    check_slots(slots, after)
    return slots


# --- crontab syntax -------------------------------------------------------------------------

AFTER = utc(2026, 1, 5, 10, 7)  # a Monday


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"minute": "*/15"},
            [utc(2026, 1, 5, 10, 15), utc(2026, 1, 5, 10, 30), utc(2026, 1, 5, 10, 45), utc(2026, 1, 5, 11, 0)],
        ),
        (
            {"minute": "0-30/10"},
            [utc(2026, 1, 5, 10, 10), utc(2026, 1, 5, 10, 20), utc(2026, 1, 5, 10, 30), utc(2026, 1, 5, 11, 0)],
        ),
        (
            {"minute": "1,3,5"},
            [utc(2026, 1, 5, 11, 1), utc(2026, 1, 5, 11, 3), utc(2026, 1, 5, 11, 5), utc(2026, 1, 5, 12, 1)],
        ),
        (
            {"minute": [5, 3, 1]},
            [utc(2026, 1, 5, 11, 1), utc(2026, 1, 5, 11, 3), utc(2026, 1, 5, 11, 5), utc(2026, 1, 5, 12, 1)],
        ),
        ({"minute": 0, "hour": "1-5"}, [utc(2026, 1, 6, h) for h in (1, 2, 3, 4)]),
        ({"minute": 0, "hour": "*/1"}, [utc(2026, 1, 5, h) for h in (11, 12, 13, 14)]),
        (
            {"minute": 50, "hour": "22-2"},  # ranges wrap like Celery's
            [utc(2026, 1, 5, 22, 50), utc(2026, 1, 5, 23, 50), utc(2026, 1, 6, 0, 50), utc(2026, 1, 6, 1, 50)],
        ),
        ({"minute": 0, "hour": 9, "day_of_week": "mon-fri"}, [utc(2026, 1, d, 9) for d in (6, 7, 8, 9)]),
        ({"minute": 0, "hour": 0, "day_of_week": "sun"}, [utc(2026, 1, d) for d in (11, 18, 25)]),
        ({"minute": 0, "hour": 0, "day_of_week": 0}, [utc(2026, 1, d) for d in (11, 18, 25)]),
        ({"minute": 0, "hour": 0, "day_of_week": "Sunday"}, [utc(2026, 1, d) for d in (11, 18, 25)]),
        ({"minute": 0, "hour": 0, "day_of_week": "fri-mon"}, [utc(2026, 1, d) for d in (9, 10, 11, 12)]),
        ({"minute": 0, "hour": 0, "day_of_month": 1, "month_of_year": "jan"}, [utc(2027, 1, 1), utc(2028, 1, 1)]),
        (
            {"minute": 0, "hour": 0, "day_of_month": 1, "month_of_year": "March,JUL"},
            [utc(2026, 3, 1), utc(2026, 7, 1), utc(2027, 3, 1)],
        ),
        ({"minute": 0, "hour": 0, "day_of_month": "*/10"}, [utc(2026, 1, d) for d in (11, 21, 31)]),
        # Like Celery (and unlike Vixie cron) both day fields must match: first Mondays.
        (
            {"minute": 0, "hour": 0, "day_of_month": "1-7", "day_of_week": "mon"},
            [utc(2026, 2, 2), utc(2026, 3, 2), utc(2026, 4, 6)],
        ),
    ],
)
def test_crontab_syntax(kwargs: dict, expected: list[datetime]) -> None:
    assert first(crontab(**kwargs), AFTER, len(expected)) == expected


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"minute": 60}, "minute"),
        ({"minute": -1}, "minute"),
        ({"minute": ""}, "minute"),
        ({"minute": "*/0"}, "minute"),
        ({"minute": "x"}, "minute"),
        ({"minute": "5L"}, "minute"),
        ({"minute": 1.5}, "minute"),
        ({"minute": True}, "minute"),
        ({"minute": []}, "minute"),
        ({"minute": ["1"]}, "minute"),
        ({"minute": "1-"}, "minute"),
        ({"minute": "mon"}, "minute"),
        ({"hour": 24}, "hour"),
        ({"hour": "1,,2"}, "hour"),
        ({"day_of_week": "funday"}, "day_of_week"),
        ({"day_of_week": "jan"}, "day_of_week"),
        ({"day_of_week": "1#2"}, "day_of_week"),
        ({"day_of_week": "?"}, "day_of_week"),
        ({"day_of_month": 0}, "day_of_month"),
        ({"day_of_month": 32}, "day_of_month"),
        ({"day_of_month": "L"}, "day_of_month"),
        ({"day_of_month": "15W"}, "day_of_month"),
        ({"month_of_year": 13}, "month_of_year"),
        ({"month_of_year": "foo"}, "month_of_year"),
        ({"day_of_month": 30, "month_of_year": "feb"}, "day_of_month"),
        ({"day_of_month": 31, "month_of_year": "4,6,9,11"}, "day_of_month"),
        ({"tz": "Mars/Olympus_Mons"}, "tz"),
    ],
)
def test_crontab_rejects_bad_fields_in_one_line_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError) as info:
        crontab(**kwargs)
    message = str(info.value)
    assert f"{field}=" in message
    assert "\n" not in message


def test_feb_29_is_possible() -> None:
    sched = crontab(minute=0, hour=0, day_of_month=29, month_of_year=2)
    assert first(sched, AFTER, 2) == [utc(2028, 2, 29), utc(2032, 2, 29)]


def test_crontab_text_forms() -> None:
    sched = crontab(minute=0, hour="*/1")
    assert sched.describe() == "cron 0 */1 * * *"
    assert repr(sched) == "crontab(minute='0', hour='*/1')"
    assert eval(repr(sched)) == sched  # noqa: S307 - repr round-trips
    paris = crontab(minute=30, hour=2, day_of_week="Monday-FRI", tz="Europe/Paris")
    assert paris.describe() == "cron 30 2 * * mon-fri (Europe/Paris)"
    assert repr(paris) == "crontab(minute='30', hour='2', day_of_week='mon-fri', tz='Europe/Paris')"
    data = paris.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["type"] == "crontab" and data["expr"] == "30 2 * * mon-fri"
    assert data["tz"] == "Europe/Paris" and data["day_of_week"] == "mon-fri"
    assert repr(crontab()) == "crontab()"


def test_equality_and_hash() -> None:
    assert crontab(minute=0) == crontab(minute="0")
    assert hash(crontab(minute=0)) == hash(crontab(minute="0"))
    assert crontab(minute=0) != crontab(minute=0, tz="Europe/Paris")
    assert schedule(10) == schedule(timedelta(seconds=10)) == as_schedule(10.0)
    assert schedule(10) != schedule(10, anchor=utc(2026, 1, 1, 0, 0, 3))
    assert schedule(60) != crontab()


def test_timezone_selection() -> None:
    plain = crontab(minute=0, hour=9)
    assert plain.next_slot(AFTER) == utc(2026, 1, 6, 9)  # no tz: UTC
    paris = plain.with_tz("Europe/Paris")
    assert paris.tz == "Europe/Paris" and plain.tz is None
    assert paris.next_slot(AFTER) == utc(2026, 1, 6, 8)  # 09:00 CET
    assert paris.with_default_tz("America/New_York") is paris  # explicit tz wins
    assert plain.with_default_tz("America/New_York").next_slot(AFTER) == utc(2026, 1, 5, 14)
    assert plain.with_tz("UTC") == crontab(minute=0, hour=9, tz="UTC")
    assert schedule(5).with_tz("Europe/Paris") == schedule(5)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        crontab().next_slot(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule(1).next_slot(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule(1, anchor=datetime(2026, 1, 1))


def test_aware_non_utc_input_gives_utc_output() -> None:
    after = datetime(2026, 1, 5, 11, 7, tzinfo=PARIS)  # 10:07 UTC
    assert crontab(minute=0).next_slot(after) == utc(2026, 1, 5, 11)
    assert schedule(60).next_slot(after) == utc(2026, 1, 5, 10, 8)


# --- intervals ------------------------------------------------------------------------------


def test_interval_is_anchored_at_the_epoch() -> None:
    sched = schedule(10)
    assert sched.next_slot(utc(2026, 1, 5, 10, 0, 3)) == utc(2026, 1, 5, 10, 0, 10)
    # Two beat processes asking at different moments agree on the grid.
    other = as_schedule(10)
    assert other.next_slot(utc(2026, 1, 5, 10, 0, 7)) == utc(2026, 1, 5, 10, 0, 10)
    # Strictly after: a slot is not its own successor.
    assert sched.next_slot(utc(2026, 1, 5, 10, 0, 10)) == utc(2026, 1, 5, 10, 0, 20)
    assert sched.next_slot(utc(2026, 1, 5, 10, 0, 9, 999_999)) == utc(2026, 1, 5, 10, 0, 10)
    assert first(sched, utc(2026, 1, 5, 10, 0, 3), 3) == [
        utc(2026, 1, 5, 10, 0, 10),
        utc(2026, 1, 5, 10, 0, 20),
        utc(2026, 1, 5, 10, 0, 30),
    ]


def test_interval_with_anchor_and_odd_sizes() -> None:
    anchor = utc(2026, 1, 5, 10, 0, 3)
    sched = schedule(timedelta(minutes=7), anchor=anchor)
    assert sched.next_slot(utc(2026, 1, 5, 10, 5)) == utc(2026, 1, 5, 10, 7, 3)
    assert sched.next_slot(utc(2026, 1, 5, 9, 59)) == anchor  # before the anchor too
    assert sched.next_slot(anchor) == utc(2026, 1, 5, 10, 7, 3)
    half = schedule(0.5)
    assert half.next_slot(utc(2026, 1, 5, 10, 0, 0, 600_000)) == utc(2026, 1, 5, 10, 0, 1)
    # Float seconds are turned into exact microseconds: no drift over millions of steps.
    tenth = schedule(0.1)
    far = utc(2026, 6, 1, 12, 0, 0)
    assert tenth.next_slot(far) == utc(2026, 6, 1, 12, 0, 0, 100_000)


@pytest.mark.parametrize("bad", [0, -1, 0.0000001, float("nan"), float("inf"), timedelta(0)])
def test_interval_rejects_non_positive(bad: float | timedelta) -> None:
    with pytest.raises(ValueError, match="run_every"):
        schedule(bad)


def test_interval_text_forms() -> None:
    assert schedule(10).describe() == "every 10s"
    assert schedule(0.5).describe() == "every 0.5s"
    assert schedule(90).describe() == "every 90s"
    assert schedule(300).describe() == "every 5m"
    assert schedule(timedelta(hours=2)).describe() == "every 2h"
    assert schedule(timedelta(days=1)).describe() == "every 1d"
    assert repr(schedule(10)) == "schedule(run_every=10.0)"
    data = schedule(10).as_dict()
    assert data == {
        "type": "interval",
        "seconds": 10.0,
        "anchor": "1970-01-01T00:00:00+00:00",
        "description": "every 10s",
    }


def test_as_schedule_coercion() -> None:
    cron = crontab(minute=0)
    assert as_schedule(cron) is cron
    assert as_schedule(10) == schedule(10)
    assert as_schedule(2.5) == schedule(2.5)
    assert as_schedule(timedelta(minutes=1)) == schedule(60)
    for bad in (True, "10", None, [10]):
        with pytest.raises(TypeError, match="unsupported beat schedule"):
            as_schedule(bad)


def test_as_schedule_accepts_celery_objects() -> None:
    celery_schedules = pytest.importorskip("celery.schedules")
    converted = as_schedule(celery_schedules.crontab(minute="*/15", hour="1-5", day_of_week="mon-fri"))
    assert converted == crontab(minute="*/15", hour="1-5", day_of_week="mon-fri")
    assert as_schedule(celery_schedules.schedule(timedelta(seconds=30))) == schedule(30)


# --- catch-up -------------------------------------------------------------------------------


def test_slots_between_is_half_open_and_limited() -> None:
    six_hourly = crontab(minute=0, hour="*/6")
    start, end = utc(2026, 1, 5), utc(2026, 1, 6)
    assert six_hourly.slots_between(start, end, 100) == [
        utc(2026, 1, 5, 6),
        utc(2026, 1, 5, 12),
        utc(2026, 1, 5, 18),
        utc(2026, 1, 6),
    ]
    # A full list holds the oldest slots; asking again from its last element continues it.
    page = six_hourly.slots_between(start, end, 2)
    assert page == [utc(2026, 1, 5, 6), utc(2026, 1, 5, 12)]
    assert six_hourly.slots_between(page[-1], end, 2) == [utc(2026, 1, 5, 18), utc(2026, 1, 6)]
    assert six_hourly.slots_between(start, end, 0) == []
    assert six_hourly.slots_between(end, start, 10) == []
    assert six_hourly.slots_between(start, start, 10) == []
    with pytest.raises(ValueError, match="limit"):
        six_hourly.slots_between(start, end, -1)


def test_interval_catch_up_after_an_outage() -> None:
    sched = schedule(10)
    missed = sched.slots_between(utc(2026, 1, 5, 10, 0, 5), utc(2026, 1, 5, 10, 1), 1000)
    assert missed == [utc(2026, 1, 5, 10, 0, s) for s in (10, 20, 30, 40, 50)] + [utc(2026, 1, 5, 10, 1)]


def test_slots_are_idempotent() -> None:
    """next_slot chained, from any point, reproduces the catch-up list exactly."""
    sched = crontab(minute="*/7", hour="8-17", day_of_week="mon-fri", tz="America/New_York")
    start = utc(2026, 1, 8)
    slots = sched.slots_between(start, start + timedelta(days=5), 1000)
    check_slots(slots, start)
    assert len(slots) == 3 * 10 * 9  # Thu, Fri, Mon; 10 hours; 9 slots per hour (0..56)
    cursor = start
    for slot in slots:
        assert sched.next_slot(cursor) == slot
        assert sched.next_slot(slot - timedelta(microseconds=1)) == slot
        cursor = slot


# --- daylight saving ------------------------------------------------------------------------

# (zone, a UTC instant shortly before the change, the change is spring-forward?)
CHANGES = {
    "paris-spring": (PARIS, utc(2026, 3, 28, 12), True),  # 2026-03-29 02:00 -> 03:00
    "paris-fall": (PARIS, utc(2026, 10, 24, 12), False),  # 2026-10-25 03:00 -> 02:00
    "ny-spring": (NEW_YORK, utc(2026, 3, 7, 12), True),  # 2026-03-08 02:00 -> 03:00
    "ny-fall": (NEW_YORK, utc(2026, 10, 31, 12), False),  # 2026-11-01 02:00 -> 01:00
}


def local(slot: datetime, zone: ZoneInfo) -> str:
    return slot.astimezone(zone).strftime("%m-%d %H:%M %Z")


def daily(sched: crontab, change: str) -> list[str]:
    zone, start, _ = CHANGES[change]
    slots = sched.with_tz(zone.key).slots_between(start, start + timedelta(days=3), 100)
    check_slots(slots, start)
    return [local(s, zone) for s in slots]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # Rule 1: 02:30 does not exist; it fires once at the first instant after the gap.
        ("paris-spring", ["03-29 03:00 CEST", "03-30 02:30 CEST", "03-31 02:30 CEST"]),
        ("ny-spring", ["03-08 03:00 EDT", "03-09 02:30 EDT", "03-10 02:30 EDT"]),
        # Rule 2: 02:30 happens twice in Paris; only the first (summer-time) one fires.
        ("paris-fall", ["10-25 02:30 CEST", "10-26 02:30 CET", "10-27 02:30 CET"]),
        # In New York 02:30 is after the repeated hour: unaffected.
        ("ny-fall", ["11-01 02:30 EST", "11-02 02:30 EST", "11-03 02:30 EST"]),
    ],
)
def test_daily_0230_across_dst(change: str, expected: list[str]) -> None:
    assert daily(crontab(minute=30, hour=2), change) == expected


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("paris-spring", ["03-29 01:30 CET", "03-30 01:30 CEST", "03-31 01:30 CEST"]),
        ("ny-spring", ["03-08 01:30 EST", "03-09 01:30 EDT", "03-10 01:30 EDT"]),
        ("paris-fall", ["10-25 01:30 CEST", "10-26 01:30 CET", "10-27 01:30 CET"]),
        # 01:30 happens twice in New York: first occurrence (EDT) only, never 01:30 EST.
        ("ny-fall", ["11-01 01:30 EDT", "11-02 01:30 EST", "11-03 01:30 EST"]),
    ],
)
def test_daily_0130_across_dst(change: str, expected: list[str]) -> None:
    assert daily(crontab(minute=30, hour=1), change) == expected


def test_daily_0230_utc_instants() -> None:
    paris = crontab(minute=30, hour=2, tz="Europe/Paris")
    assert paris.slots_between(utc(2026, 3, 28), utc(2026, 3, 31), 10) == [
        utc(2026, 3, 28, 1, 30),
        utc(2026, 3, 29, 1, 0),
        utc(2026, 3, 30, 0, 30),
    ]
    assert paris.slots_between(utc(2026, 10, 24), utc(2026, 10, 27), 10) == [
        utc(2026, 10, 24, 0, 30),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
    ]
    # Asked from inside the repeated hour, the second 02:30 is not a slot.
    assert paris.next_slot(utc(2026, 10, 25, 0, 45)) == utc(2026, 10, 26, 1, 30)
    assert paris.next_slot(utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 26, 1, 30)


@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize(("minute", "step"), [(0, 60), ("*/15", 15), (30, 60)])
def test_every_hour_schedules_follow_real_time(change: str, minute: int | str, step: int) -> None:
    """Rule 3: hour='*' schedules tick on real elapsed time, one slot per real step."""
    zone, start, spring = CHANGES[change]
    sched = crontab(minute=minute, tz=zone.key)
    end = start + timedelta(days=2)
    slots = sched.slots_between(start, end, 10_000)
    check_slots(slots, start)
    gaps = {b - a for a, b in pairwise(slots)}
    assert gaps == {timedelta(minutes=step)}
    assert len(slots) == (end - start) // timedelta(minutes=step)
    # The local day of the change is 23 or 25 hours long, and has that many hourly slots.
    day = [s for s in slots if s.astimezone(zone).date() == (start + timedelta(days=1)).date()]
    assert len(day) == (23 if spring else 25) * 60 // step


def test_every_hour_asked_from_inside_the_repeated_hour() -> None:
    hourly = crontab(minute=0, tz="Europe/Paris")
    # 00:30 UTC is 02:30 CEST: the next real hour is 01:00 UTC (02:00 CET, second pass).
    assert hourly.next_slot(utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 25, 1)
    assert hourly.next_slot(utc(2026, 10, 25, 1, 30)) == utc(2026, 10, 25, 2)
    assert hourly.next_slot(utc(2026, 3, 29, 0, 30)) == utc(2026, 3, 29, 1)


def test_fixed_hours_touching_the_gap() -> None:
    # 02:00 moves to 03:00, which the schedule also names: one slot, not two.
    one_to_three = crontab(minute=0, hour="1-3", tz="Europe/Paris")
    assert [local(s, PARIS) for s in one_to_three.slots_between(utc(2026, 3, 28, 12), utc(2026, 3, 29, 12), 10)] == [
        "03-29 01:00 CET",
        "03-29 03:00 CEST",
    ]
    # 02:30 moves to 03:00, which is not 03:30: both fire.
    half_past = crontab(minute=30, hour="2,3", tz="Europe/Paris")
    assert [local(s, PARIS) for s in half_past.slots_between(utc(2026, 3, 28, 12), utc(2026, 3, 29, 12), 10)] == [
        "03-29 03:00 CEST",
        "03-29 03:30 CEST",
    ]
    # Several times inside the gap collapse into the one instant after it.
    quarters = crontab(minute="*/15", hour=2, tz="America/New_York")
    assert [local(s, NEW_YORK) for s in quarters.slots_between(utc(2026, 3, 7, 12), utc(2026, 3, 8, 12), 10)] == [
        "03-08 03:00 EDT"
    ]
    # Repeated hour with fixed hours: the first pass only.
    assert [
        local(s, NEW_YORK)
        for s in quarters.with_tz("America/New_York").slots_between(utc(2026, 10, 31, 12), utc(2026, 11, 1, 12), 10)
    ] == ["11-01 02:00 EST", "11-01 02:15 EST", "11-01 02:30 EST", "11-01 02:45 EST"]
    ones = crontab(minute="*/20", hour=1, tz="America/New_York")
    assert [local(s, NEW_YORK) for s in ones.slots_between(utc(2026, 10, 31, 12), utc(2026, 11, 1, 12), 10)] == [
        "11-01 01:00 EDT",
        "11-01 01:20 EDT",
        "11-01 01:40 EDT",
    ]


def oracle(
    zone: ZoneInfo, matches: Callable[[int, int], bool], real_time: bool, start: datetime, end: datetime
) -> list[datetime]:
    """The documented DST rule, applied by brute force to every real minute in (start, end]."""
    out = []
    instant = start + MINUTE
    while instant <= end:
        here = instant.astimezone(zone)
        jump = here.utcoffset() - (instant - MINUTE).astimezone(zone).utcoffset()
        if real_time:  # rule 3: whatever the local clock shows, every real minute
            hit = matches(here.hour, here.minute)
        else:
            hit = matches(here.hour, here.minute) and here.fold == 0  # rule 2
            wall = here.replace(tzinfo=None)
            skipped = wall - jump
            while jump > timedelta(0) and skipped < wall:  # rule 1: wall times in the gap
                hit = hit or matches(skipped.hour, skipped.minute)
                skipped += MINUTE
        if hit:
            out.append(instant)
        instant += MINUTE
    return out


ORACLE_CASES = [
    ({"minute": 30, "hour": 2}, lambda h, m: (h, m) == (2, 30), False),
    ({"minute": 30, "hour": 1}, lambda h, m: (h, m) == (1, 30), False),
    ({"minute": 0, "hour": "1-3"}, lambda h, m: m == 0 and 1 <= h <= 3, False),
    ({"minute": "*/20", "hour": "0-2"}, lambda h, m: m % 20 == 0 and h <= 2, False),
    ({"minute": 0}, lambda h, m: m == 0, True),
    ({"minute": "*/15"}, lambda h, m: m % 15 == 0, True),
    ({"minute": "5,50", "hour": "*/1"}, lambda h, m: m in (5, 50), True),
]


@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize(("kwargs", "matches", "real_time"), ORACLE_CASES)
def test_dst_rule_matches_brute_force(
    change: str, kwargs: dict, matches: Callable[[int, int], bool], real_time: bool
) -> None:
    zone, start, _ = CHANGES[change]
    sched = crontab(**kwargs, tz=zone.key)
    end = start + timedelta(days=2)
    expected = oracle(zone, matches, real_time, start, end)
    assert sched.slots_between(start, end, 10_000) == expected
    # From any moment around the change -- including inside the gap or the repeated hour --
    # the next slot is the first expected one after it: nothing skipped, nothing doubled.
    after = start + timedelta(hours=10)
    while after < start + timedelta(hours=16):
        assert sched.next_slot(after) == next(s for s in expected if s > after), after
        after += timedelta(minutes=5)


@pytest.mark.parametrize("zone", ["Europe/Paris", "America/New_York", "Australia/Sydney"])
def test_a_year_of_hourly_slots_is_exactly_one_hour_apart(zone: str) -> None:
    start, end = utc(2026, 1, 1), utc(2027, 1, 1)
    slots = crontab(minute=0, tz=zone).slots_between(start, end, 100_000)
    check_slots(slots, start)
    assert len(slots) == 365 * 24
    assert all(b - a == timedelta(hours=1) for a, b in pairwise(slots))


@pytest.mark.parametrize("zone", ["Europe/Paris", "America/New_York"])
@pytest.mark.parametrize("hour", [1, 2, 3])
def test_a_year_of_daily_slots_fires_once_per_local_day(zone: str, hour: int) -> None:
    tz = ZoneInfo(zone)
    start, end = datetime(2026, 1, 1, tzinfo=tz), datetime(2027, 1, 1, tzinfo=tz)
    slots = crontab(minute=30, hour=hour, tz=zone).slots_between(start, end, 1000)
    check_slots(slots, start.astimezone(UTC))
    days = [s.astimezone(tz).date() for s in slots]
    assert len(days) == len(set(days)) == 365
