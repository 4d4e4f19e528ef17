"""Beat's lease, fire script and loop on a fake clock.

The store's Lua scripts run on the session's real server (fakeredis has no Lua here); time never
passes for real: every ``Beat`` gets a clock the test moves by hand.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from itertools import pairwise

import pytest
import redis
from typer.testing import CliRunner

from engine import App
from engine.beat import CATCHUP_LIMIT, Beat, BeatControl, UnknownEntry, due_slots, slot_task_id
from engine.beat_store import ALREADY, DISABLED, FIRED, LEASE_KEY, NOT_LEADER, BeatStore, entry_key, to_us
from engine.exceptions import ImproperlyConfigured
from engine.schedules import crontab, schedule

UTC = timezone.utc
T0 = datetime(2026, 3, 2, 12, 0, 0, 500_000, tzinfo=UTC)  # half a second after a 1 s slot
SEC = timedelta(seconds=1)


class Clock:
    """Beat's clock, moved by hand; ``wait`` moves it on at once instead of sleeping."""

    def __init__(self, now: datetime = T0, stop_at: datetime | None = None) -> None:
        self.instant = now
        self.stop_at = stop_at

    def now(self) -> datetime:
        return self.instant

    def advance(self, seconds: float) -> None:
        self.instant += timedelta(seconds=seconds)

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        self.advance(seconds)
        if self.stop_at is not None and self.instant >= self.stop_at:
            stop.set()
        return stop.is_set()


@pytest.fixture
def make_app(redis_url: str, redis_client: redis.Redis) -> Iterator:
    apps: list[App] = []

    def make(entries: dict | None = None, **conf) -> App:
        app = App("beattest", broker=redis_url, **conf)
        app.conf.beat_schedule = (
            entries
            if entries is not None
            else {
                "tick": {"task": "t.tick", "schedule": 1.0, "args": (1,)},
                "minute": {"task": "t.minute", "schedule": crontab(minute="*"), "options": {"queue": "high"}},
            }
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def sent(client: redis.Redis, queue: str = "celery") -> list[dict]:
    """Headers of every message on ``queue``, oldest first."""
    return [json.loads(raw)["headers"] for raw in reversed(client.lrange(queue, 0, -1))]


def slots_of(client: redis.Redis, entry: str = "tick", queue: str = "celery") -> list[str]:
    return [h["beat_slot"] for h in sent(client, queue) if h.get("beat_entry") == entry]


# -- pure catch-up arithmetic ---------------------------------------------------------------


def test_due_slots_fires_every_missed_slot_up_to_the_cap() -> None:
    every = schedule(1)
    assert due_slots(every, T0, T0) == ([], False)
    slots, capped = due_slots(every, T0, T0 + 5 * SEC)
    assert not capped and slots == [T0 + timedelta(seconds=s, microseconds=-500_000) for s in range(1, 6)]
    slots, capped = due_slots(every, T0, T0 + 100 * SEC)
    assert not capped and len(slots) == 100


def test_due_slots_over_the_cap_keeps_the_latest_and_is_cheap_for_a_year() -> None:
    every = schedule(1)
    now = T0 + timedelta(days=365)
    slots, capped = due_slots(every, T0, now)
    assert capped and len(slots) == CATCHUP_LIMIT
    assert slots[-1] == every.next_slot(now - SEC) and slots[-1] <= now
    assert all(b - a == SEC for a, b in pairwise(slots))
    slots, capped = due_slots(every, T0, T0 + 101 * SEC, limit=100)
    assert capped and slots[0] == T0 + timedelta(seconds=1.5)


# -- store: lease and fire ------------------------------------------------------------------


def test_lease_is_exclusive_renewed_by_holder_only_and_released_by_holder_only(redis_client) -> None:
    store = BeatStore(redis_client)
    assert store.acquire("a", 3000)
    assert not store.acquire("b", 3000)
    assert store.acquire("a", 3000), "the holder re-acquiring keeps its lease"
    assert store.renew("a", 3000) and not store.renew("b", 3000)
    assert not store.release("b")
    holder = store.holder()
    assert holder is not None and holder["token"] == "a"
    assert 0 < holder["ttl_ms"] <= 3000
    assert store.release("a") and store.holder() is None
    assert store.acquire("b", 3000)
    redis_client.delete(LEASE_KEY)  # as if it expired
    assert not store.renew("b", 3000), "an expired lease is not silently re-created by renew"


def test_fire_claims_each_slot_once_and_only_for_the_lease_holder(redis_client) -> None:
    store = BeatStore(redis_client)
    store.acquire("a", 3000)
    store.init_entries(["e"], T0)
    slot = T0 + SEC
    assert store.fire("b", "e", slot) == NOT_LEADER
    assert store.fire("a", "e", slot) == FIRED
    assert store.fire("a", "e", slot) == ALREADY
    assert store.fire("a", "e", T0 - SEC) == ALREADY, "never back before the cursor"
    state = store.states(["e"])["e"]
    assert state["last_run"] == slot and state["cursor"] == slot and state["total_run_count"] == 1
    store.set_enabled("e", False, T0)
    assert store.fire("a", "e", slot + SEC) == DISABLED
    state = store.states(["e"])["e"]
    assert state["cursor"] == slot + SEC and state["last_run"] == slot and not state["enabled"]


def test_reenabling_moves_the_cursor_to_now_but_enabling_an_enabled_entry_does_not(redis_client) -> None:
    store = BeatStore(redis_client)
    store.init_entries(["e"], T0)
    assert not store.set_enabled("e", True, T0 + 10 * SEC)
    assert store.states(["e"])["e"]["cursor"] == T0, "pending catch-up kept"
    assert store.set_enabled("e", False, T0 + 10 * SEC)
    assert store.set_enabled("e", True, T0 + 20 * SEC)
    assert store.states(["e"])["e"]["cursor"] == T0 + 20 * SEC
    assert redis_client.hget(entry_key("e"), "cursor") == str(to_us(T0 + 20 * SEC)).encode()


# -- the loop on a fake clock ---------------------------------------------------------------


def test_new_entry_starts_from_now_then_fires_each_slot_once(make_app, redis_client) -> None:
    clock = Clock()
    beat = Beat(make_app(), lease_seconds=3, clock=clock)
    delay = beat.tick_once()
    assert beat.is_leader and sent(redis_client) == [], "no back-fill for a new entry"
    assert 0 < delay <= 0.5
    for _ in range(5):
        clock.advance(1)
        beat.tick_once()
        beat.tick_once()  # a second tick at the same instant sends nothing more
    expected = [(T0 + timedelta(seconds=s, microseconds=-500_000)).isoformat() for s in range(1, 6)]
    assert slots_of(redis_client) == expected
    first = sent(redis_client)[0]
    assert first["id"] == slot_task_id("tick", T0 + timedelta(seconds=0.5)) and first["task"] == "t.tick"


def test_standby_never_fires_and_takes_over_with_the_missed_slots(make_app, redis_client, caplog) -> None:
    clock = Clock()
    app = make_app()
    leader, standby = Beat(app, lease_seconds=3, clock=clock), Beat(app, lease_seconds=3, clock=clock)
    leader.tick_once()
    assert standby.tick_once() == 0.5 and not standby.is_leader
    clock.advance(2)
    leader.tick_once()
    standby.tick_once()
    redis_client.delete(LEASE_KEY)  # the leader died and its lease ran out
    clock.advance(3)
    with caplog.at_level(logging.INFO, logger="engine.beat"):
        standby.tick_once()
    assert standby.is_leader
    leader.tick_once()  # the old leader wakes up: its renew fails, it stands by, sends nothing
    assert not leader.is_leader
    slots = slots_of(redis_client)
    assert len(slots) == len(set(slots)) == 5
    assert sum("beat: sent tick (t.tick) for slot" in r.getMessage() for r in caplog.records) == 3


def test_split_brain_leader_cannot_fire_without_the_lease(make_app, redis_client) -> None:
    clock = Clock()
    app = make_app()
    a, b = Beat(app, lease_seconds=3, clock=clock), Beat(app, lease_seconds=3, clock=clock)
    a.tick_once()
    redis_client.set(LEASE_KEY, b.token)  # b took over while a was paused
    b.is_leader = True
    clock.advance(3)
    assert a._fire_due(clock.now()) is None and not a.is_leader
    assert sent(redis_client) == []
    b.tick_once()
    a.is_leader = True  # a still believes it leads: the fire script refuses it
    a._fire_due(clock.now())
    assert len(slots_of(redis_client)) == 3 and len(set(slots_of(redis_client))) == 3


def test_restart_neither_refires_nor_skips(make_app, redis_client) -> None:
    clock = Clock()
    app = make_app()
    first = Beat(app, lease_seconds=3, clock=clock)
    first.tick_once()
    clock.advance(3)
    first.tick_once()
    first.close()
    assert redis_client.get(LEASE_KEY) is None, "a clean stop releases the lease"
    clock.advance(4)
    second = Beat(app, lease_seconds=3, clock=clock)
    second.tick_once()
    slots = slots_of(redis_client)
    assert len(slots) == 7 and len(set(slots)) == 7
    assert [datetime.fromisoformat(s) for s in slots] == [T0 + timedelta(seconds=s - 0.5) for s in range(1, 8)]


def test_run_loop_waits_on_its_clock_a_simulated_minute_sends_each_slot_once(make_app, redis_client) -> None:
    """``run`` sleeps through the injected clock: a minute of slots passes without waiting for it."""
    clock = Clock(stop_at=T0 + 60 * SEC)
    Beat(make_app(), lease_seconds=3, clock=clock).run(threading.Event())
    assert slots_of(redis_client) == [(T0 + timedelta(seconds=s - 0.5)).isoformat() for s in range(1, 61)]
    assert slots_of(redis_client, "minute", "high") == ["2026-03-02T12:01:00+00:00"]
    assert redis_client.get(LEASE_KEY) is None, "the loop's end releases the lease"


def test_two_beats_over_a_simulated_minute_send_each_slot_once_and_the_standby_takes_over(
    make_app, redis_client
) -> None:
    """Two beats on one simulated clock, each woken when its own ``tick_once`` asks; the leader dies
    (no clean stop) half-way and its lease runs out ``lease`` seconds after its last renewal, as the
    server's ``PX`` would. Every 1 s slot goes out once, by the leader before the kill and by the
    standby after, including the slots that fell due while nobody led."""
    clock, app, lease = Clock(), make_app(), 3.0
    a, b = Beat(app, lease_seconds=lease, clock=clock), Beat(app, lease_seconds=lease, clock=clock)
    wake = {a: T0, b: T0 + timedelta(milliseconds=100)}
    kill_at, end = T0 + 30 * SEC, T0 + 60 * SEC
    sender: dict[str, Beat] = {}
    lease_ends, killed, takeover = T0, None, None
    while min(wake.values()) <= end:
        beat = min(wake, key=wake.__getitem__)
        clock.instant = wake[beat]
        if killed is None and clock.instant >= kill_at:
            killed = a if a.is_leader else b
            del wake[killed]  # killed: no more ticks, and no close() to release the lease
            continue
        if clock.instant >= lease_ends:
            redis_client.delete(LEASE_KEY)  # expired on the server
        before = len(slots_of(redis_client))
        wake[beat] = clock.instant + timedelta(seconds=beat.tick_once())
        sender.update((slot, beat) for slot in slots_of(redis_client)[before:])
        if beat.is_leader:
            lease_ends = clock.instant + timedelta(seconds=lease)
            if killed is not None and takeover is None:
                takeover = clock.instant
    assert killed is not None and takeover is not None
    standby = b if killed is a else a
    slots = [datetime.fromisoformat(s) for s in slots_of(redis_client)]
    assert slots == [T0 + timedelta(seconds=s - 0.5) for s in range(1, 61)], "each slot once, none missing"
    assert all(sender[s.isoformat()] is killed for s in slots if s < kill_at)
    assert all(sender[s.isoformat()] is standby for s in slots if s >= kill_at)
    assert any(kill_at <= s < takeover for s in slots), "slots due while nobody led fire on takeover"
    assert takeover <= kill_at + timedelta(seconds=lease + standby.standby_poll)  # simulated seconds
    assert slots_of(redis_client, "minute", "high") == ["2026-03-02T12:01:00+00:00"]


def test_catch_up_is_capped_and_says_so(make_app, redis_client, caplog) -> None:
    clock = Clock()
    app = make_app({"tick": {"task": "t.tick", "schedule": 1.0}})
    Beat(app, lease_seconds=3, clock=clock).tick_once()
    redis_client.delete(LEASE_KEY)
    clock.advance(3600)
    with caplog.at_level(logging.WARNING, logger="engine.beat"):
        Beat(app, lease_seconds=3, clock=clock, catchup_limit=10).tick_once()
    slots = [datetime.fromisoformat(s) for s in slots_of(redis_client)]
    assert len(slots) == 10 and slots[-1] == clock.now() - timedelta(seconds=0.5)
    assert "missed more than 10 slots" in caplog.text


def test_crontab_is_evaluated_in_the_app_timezone(make_app, redis_client) -> None:
    clock = Clock(datetime(2026, 1, 5, 1, 59, 59, tzinfo=UTC))  # 02:59:59 in Paris (UTC+1)
    app = make_app({"three": {"task": "t.x", "schedule": crontab(minute=0, hour=3)}}, timezone="Europe/Paris")
    beat = Beat(app, lease_seconds=3, clock=clock)
    beat.tick_once()
    assert BeatControl(app, clock=clock).entries()[0]["next_run"] == "2026-01-05T02:00:00+00:00"
    clock.advance(1)
    beat.tick_once()
    assert slots_of(redis_client, "three") == ["2026-01-05T02:00:00+00:00"]


# -- control API ----------------------------------------------------------------------------


def test_control_lists_runs_now_and_disables_while_beat_leads(make_app, redis_client) -> None:
    clock = Clock()
    app = make_app()
    beat, control = Beat(app, lease_seconds=3, clock=clock), BeatControl(app, clock=clock)
    rows = {r["name"]: r for r in control.entries()}
    assert rows["tick"] == {
        "name": "tick",
        "task": "t.tick",
        "schedule": "every 1s",
        "args": [1],
        "kwargs": {},
        "options": {},
        "enabled": True,
        "last_run": None,
        "next_run": (T0 + timedelta(seconds=0.5)).isoformat(),
        "total_run_count": 0,
    }
    assert rows["minute"]["schedule"] == "cron * * * * * (UTC)" and rows["minute"]["options"] == {"queue": "high"}
    beat.tick_once()
    leader = control.leader()
    assert leader is not None and leader["token"] == beat.token

    task_id = control.run_now("minute")
    manual = sent(redis_client, "high")
    assert [h["id"] for h in manual] == [task_id] and "beat_slot" not in manual[0]
    assert control.entry("minute")["total_run_count"] == 0 and control.entry("minute")["last_run"] is None

    clock.advance(1)
    beat.tick_once()
    assert control.disable("tick")["enabled"] is False and control.entry("tick")["next_run"] is None
    clock.advance(5)
    beat.tick_once()
    assert len(slots_of(redis_client)) == 1, "a disabled entry's slots are skipped"
    row = control.enable("tick")
    assert row["enabled"] and row["next_run"] == (clock.now() + timedelta(seconds=0.5)).isoformat()
    clock.advance(1)
    beat.tick_once()
    slots = slots_of(redis_client)
    assert len(slots) == 2 and slots[-1] == (clock.now() - timedelta(seconds=0.5)).isoformat(), "no queued-up slots"
    assert control.entry("tick")["total_run_count"] == 2
    with pytest.raises(UnknownEntry, match="no beat entry 'nope'"):
        control.run_now("nope")


@pytest.mark.parametrize(
    "spec, why",
    [
        ({"schedule": 1.0}, "'task' must be a task name"),
        ({"task": "t"}, "'schedule' is missing"),
        ({"task": "t", "schedule": "soon"}, "unsupported beat schedule"),
        ({"task": "t", "schedule": 1.0, "args": 5}, "'args' must be a list"),
    ],
)
def test_bad_entries_are_one_line_configuration_errors(make_app, spec, why) -> None:
    with pytest.raises(ImproperlyConfigured, match=why):
        Beat(make_app({"bad": spec}))


# -- CLI (in process) -----------------------------------------------------------------------


def test_cli_ls_json_and_errors(redis_url: str, redis_client: redis.Redis) -> None:
    from tests.apps import beatapp
    from tqctl.commands.beat import app as cli

    beatapp.app.close()
    runner = CliRunner()
    args = ["-A", "tests.apps.beatapp", "--broker", redis_url]
    result = runner.invoke(cli, ["ls", *args, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["every-second", "every-minute", "hourly-high"]
    assert all(r["next_run"] and r["enabled"] for r in rows)
    result = runner.invoke(cli, [*args, "ls", "--json"])  # -A on the group works too
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["name"] == "every-second"
    result = runner.invoke(cli, ["disable", "nope", *args])
    assert result.exit_code == 1 and result.stderr.strip().startswith("tqctl: error: no beat entry 'nope'")
    assert len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(cli, ["ls"])
    assert result.exit_code == 2 and "missing -A/--app" in result.stderr
    result = runner.invoke(cli, [])
    assert result.exit_code == 2 and "missing -A/--app" in result.stderr
    assert redis_client.keys("tqctl.beat.*") == [], "listing and failed commands write nothing"


def test_a_new_leader_drops_removed_entries_so_a_readded_entry_starts_afresh(make_app, redis_client) -> None:
    clock = Clock()
    old = Beat(make_app(), lease_seconds=3, clock=clock)
    old.tick_once()
    clock.advance(2)
    old.tick_once()
    old.close()
    clock.advance(60)
    Beat(
        make_app({"minute": {"task": "t.minute", "schedule": crontab(minute="*")}}), lease_seconds=3, clock=clock
    ).tick_once()
    assert redis_client.exists(entry_key("tick")) == 0 and redis_client.exists(entry_key("minute")) == 1
    clock.advance(3600)
    redis_client.delete(LEASE_KEY)
    readded = Beat(make_app(), lease_seconds=3, clock=clock)
    readded.tick_once()
    assert len(slots_of(redis_client)) == 2, "no catch-up for an entry that was removed meanwhile"


@pytest.mark.parametrize("night", ["2026-03-29", "2026-10-25"])
def test_paris_dst_nights_fire_exactly_the_schedule_slots(make_app, redis_client, night: str) -> None:
    """C3 through beat: step a fake clock over a DST night; beat sends each slot of the documented
    rule once (schedules' own tests cover the rule itself)."""
    start = datetime.fromisoformat(f"{night}T00:00:00+00:00") - timedelta(hours=2)
    entries = {
        "half": {"task": "t.h", "schedule": crontab(minute=30, hour=2)},
        "quarter": {"task": "t.q", "schedule": crontab(minute="*/15")},
    }
    app = make_app(entries, timezone="Europe/Paris")
    clock = Clock(start)
    beat = Beat(app, lease_seconds=3, clock=clock)
    for _ in range(6 * 60 // 7 + 1):  # six hours in 7-minute steps, so ticks straddle slots
        beat.tick_once()
        clock.advance(7 * 60)
    beat.tick_once()
    for name in entries:
        sched = beat.entries[name].schedule
        expected = [s.isoformat() for s in sched.slots_between(start, clock.now(), 1000)]
        assert slots_of(redis_client, name) == expected
    assert len(slots_of(redis_client, "half")) == 1


def test_start_thread_embeds_beat_and_a_stop_releases_the_lease(make_app, redis_client) -> None:
    """What ``tqctl worker -B`` uses: a daemon thread, stopped through its event."""
    import time

    beat = Beat(make_app({"tick": {"task": "t.tick", "schedule": 0.2}}), lease_seconds=3, tick=0.5)
    thread, stop = beat.start_thread()
    deadline = time.monotonic() + 10
    while not slots_of(redis_client) and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(10)
    assert not thread.is_alive() and thread.daemon
    assert slots_of(redis_client) and redis_client.get(LEASE_KEY) is None


def test_an_unreachable_broker_is_logged_once_and_retried(caplog) -> None:
    app = App("down", broker="redis://:hunter2@127.0.0.1:1/0")
    app.conf.beat_schedule = {"tick": {"task": "t.tick", "schedule": 1.0}}
    beat = Beat(app, lease_seconds=3, tick=0.25)
    with caplog.at_level(logging.WARNING, logger="engine.beat"):
        assert beat.tick_once() == 0.25 and beat.tick_once() == 0.25
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "cannot reach broker at 127.0.0.1:1" in warnings[0]
    assert "hunter2" not in caplog.text and not beat.is_leader
    app.close()


def test_on_rabbitmq_the_state_is_in_the_redis_result_backend_or_beat_refuses_in_one_line() -> None:
    """RabbitMQ keeps nothing that can be read back: the lease and entries go where tqctl keeps its
    other state (revokes, history). Nothing connects here; the clients are lazy."""
    from engine.beat import open_store

    paired = App("paired", broker="amqp://guest:guest@127.0.0.1:1//", backend="redis://127.0.0.1:1/3")
    alone = App("alone", broker="amqp://guest:guest@127.0.0.1:1//")
    try:
        store = open_store(paired)
        assert store.client.connection_pool.settings.db == 3
        with pytest.raises(ImproperlyConfigured, match="on RabbitMQ a Redis result backend"):
            open_store(alone)
    finally:
        paired.close()
        alone.close()
