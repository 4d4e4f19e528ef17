"""Beat: publish ``app.conf.beat_schedule`` entries at their slots, once each, from any number
of beat processes.

Leader lease: every beat tries ``SET tqctl.beat.lease TOKEN NX PX lease``; the holder renews
it (compare-and-``PEXPIRE`` in Lua) every ``min(tick, lease/3)`` and deletes it on a clean
stop; standbys retry every ``min(tick, lease/6)``, so when a leader dies another takes over at
most ``lease + lease/6`` later. Idempotency: before publishing a slot the leader runs one
atomic Lua ``fire`` that checks it still holds the lease and moves the entry's cursor from
before the slot to the slot; only a winning ``fire`` publishes, so no (entry, slot) is ever sent
twice, even if two beats briefly both think they lead. Slots that fell due while no leader ran
(takeover, restart) fire on the next leader's first tick, oldest first, each once: at most
``CATCHUP_LIMIT`` (100) per entry; when more were missed, only the latest 100 fire and the
older ones are skipped (a warning says so). A new entry starts from "now" (first run at its
next slot, no back-fill). A disabled entry's slots are skipped, not queued up: re-enabling it
moves its cursor to "now", so it fires next at its first slot after the ``enable``. On taking
the lease, a leader drops the state of entries no longer in its ``beat_schedule``, so an entry
removed and later re-added starts afresh instead of catching up.

Trade-off: a slot is claimed before it is published, so a beat killed in the instant between
the two (one round trip) loses that slot rather than sending it twice (at most once per slot).

Schedules are evaluated in ``app.conf.timezone`` unless an entry's crontab names its own ``tz``.
Each message carries headers ``beat_entry`` and ``beat_slot`` (ISO, UTC) and a task id derived
from (entry, slot), so consumers can dedupe too. State lives in the broker (``engine.beat_store``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import takewhile
from typing import Any, Protocol

from engine import resp, signals
from engine.beat_store import FIRED, NOT_LEADER, BeatStore, to_us
from engine.broker.inspect import is_amqp
from engine.exceptions import BrokerUnavailable, ImproperlyConfigured, one_line
from engine.redisconn import describe_error
from engine.schedules import Schedule, as_schedule

__all__ = [
    "CATCHUP_LIMIT",
    "SYSTEM_CLOCK",
    "Beat",
    "BeatControl",
    "Clock",
    "Entry",
    "SystemClock",
    "UnknownEntry",
    "due_slots",
    "load_entries",
]

UTC = timezone.utc
CATCHUP_LIMIT = 100
DEFAULT_LEASE = 10.0
DEFAULT_TICK = 1.0
log = logging.getLogger("engine.beat")


class Clock(Protocol):
    """Where beat reads the time and waits between ticks: injected so tests can move time forward
    by hand (a minute of slots in milliseconds) instead of sleeping through it. The lease's expiry
    is the server's (``PX``), never this clock's, so replicas agree on it whatever their clocks."""

    def now(self) -> datetime:
        """The current instant, timezone-aware (UTC)."""
        ...

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """Wait up to ``seconds`` or until ``stop`` is set; True when it is set."""
        ...


class SystemClock:
    """The real clock: wall time, and ``Event.wait`` so a stop wakes the loop at once."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        return stop.wait(seconds)


SYSTEM_CLOCK: Clock = SystemClock()


class UnknownEntry(LookupError):
    pass


@dataclass(frozen=True)
class Entry:
    name: str
    task: str
    schedule: Schedule
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, name: str, spec: Any, tz: str | None) -> Entry:
        def bad(why: str) -> ImproperlyConfigured:
            return ImproperlyConfigured(f"beat_schedule[{name!r}]: {why}")

        if not isinstance(spec, Mapping):
            raise bad("must be a dict with 'task' and 'schedule'")
        task = spec.get("task")
        if not isinstance(task, str) or not task:
            raise bad("'task' must be a task name")
        if "schedule" not in spec:
            raise bad("'schedule' is missing")
        try:
            sched = as_schedule(spec["schedule"]).with_default_tz(tz)
        except (TypeError, ValueError) as exc:
            raise bad(str(exc)) from None
        args, kwargs, options = spec.get("args") or (), spec.get("kwargs") or {}, spec.get("options") or {}
        if not isinstance(args, (list, tuple)):
            raise bad("'args' must be a list or tuple")
        if not isinstance(kwargs, Mapping) or not isinstance(options, Mapping):
            raise bad("'kwargs' and 'options' must be dicts")
        return cls(name, task, sched, tuple(args), dict(kwargs), dict(options))


def load_entries(app: Any) -> dict[str, Entry]:
    finalize = getattr(app, "finalize", None)
    if finalize is not None:  # receivers of on_after_configure may add_periodic_task (engine.app_lifecycle)
        finalize()
    schedule = app.conf.beat_schedule or {}
    if not isinstance(schedule, Mapping):
        raise ImproperlyConfigured("beat_schedule must be a dict of entry name -> entry")
    tz = app.conf.timezone or "UTC"
    return {str(name): Entry.parse(str(name), spec, tz) for name, spec in schedule.items()}


def due_slots(
    sched: Schedule, cursor: datetime, now: datetime, limit: int = CATCHUP_LIMIT
) -> tuple[list[datetime], bool]:
    """Slots in (cursor, now] to fire, oldest first: all of them, or the latest ``limit`` and True
    when more fell due (the older ones are then skipped)."""
    slots = sched.slots_between(cursor, now, limit + 1)
    if len(slots) <= limit:
        return slots, False
    # Too many: find a window (now - span, now] holding at least ``limit`` slots by doubling, so
    # a year-long gap on a 1 s schedule costs a few thousand steps, not millions.
    span = timedelta(seconds=1)
    start = now - span
    while start > cursor and len(sched.slots_between(start, now, limit)) < limit:
        span *= 2
        start = now - span
    start = max(start, cursor)
    return list(deque(takewhile(lambda s: s <= now, sched.iter_slots(start)), maxlen=limit)), True


def slot_task_id(name: str, slot: datetime) -> str:
    """Task id derived from (entry, slot): the same slot always gets the same id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"tqctl-beat:{name}:{to_us(slot)}"))


def send_entry(app: Any, entry: Entry, slot: datetime | None = None) -> str:
    """Publish one run of ``entry`` through ``app.send_task``; ``slot`` None for a manual run."""
    options = dict(entry.options)
    headers = dict(options.pop("headers", None) or {})
    headers["beat_entry"] = entry.name
    if slot is not None:
        headers["beat_slot"] = slot.isoformat()
        options["task_id"] = slot_task_id(entry.name, slot)
    return app.send_task(entry.task, entry.args, entry.kwargs, headers=headers, **options).id


def open_store(app: Any) -> BeatStore:
    """The broker's Redis; on RabbitMQ, which keeps nothing that can be read back, the Redis result
    backend, where tqctl keeps its other state (revokes, history) and the console looks for beat's."""
    client = getattr(app.broker, "client", None)
    if not isinstance(client, resp.Client) and is_amqp(app.broker_url()):
        client = getattr(app.backend, "client", None)
    if not isinstance(client, resp.Client):
        raise ImproperlyConfigured(
            "beat keeps its lease and state in Redis: it needs a Redis broker (redis://, rediss://, "
            "redis+socket://), or on RabbitMQ a Redis result backend (result_backend or TQCTL_BACKEND)"
        )
    return BeatStore(client)


class Beat:
    """The scheduler loop. ``run(stop_event)`` blocks; ``start_thread()`` embeds it (worker -B)."""

    def __init__(
        self,
        app: Any,
        *,
        lease_seconds: float | None = None,
        tick: float | None = None,
        catchup_limit: int = CATCHUP_LIMIT,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.app = app
        self.lease = float(lease_seconds or app.conf.get("tqctl_beat_lease") or DEFAULT_LEASE)
        self.tick = float(tick or app.conf.get("tqctl_beat_tick") or DEFAULT_TICK)
        if self.lease <= 0 or self.tick <= 0:
            raise ImproperlyConfigured("beat lease and tick must be positive")
        self.catchup_limit = catchup_limit
        self.clock = clock
        self.entries = load_entries(app)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.is_leader = False
        self._store: BeatStore | None = None
        self._failing = False

    @property
    def store(self) -> BeatStore:
        if self._store is None:
            self._store = open_store(self.app)
        return self._store

    @property
    def renew_every(self) -> float:
        return min(self.tick, self.lease / 3)

    @property
    def standby_poll(self) -> float:
        return min(self.tick, self.lease / 6)

    # -- loop -------------------------------------------------------------------------------
    def run(self, stop_event: threading.Event | None = None, embedded: bool = False) -> None:
        stop = stop_event or threading.Event()
        log.info("beat: starting as %s with %d entries (lease %gs)", self.token, len(self.entries), self.lease)
        signals.beat_init.send(sender=self)  # Celery's signals: per-process setup hooks for beat
        if embedded:
            signals.beat_embedded_init.send(sender=self)
        try:
            while not stop.is_set():
                self.clock.wait(stop, self.tick_once())
        finally:
            self.close()
            log.info("beat: stopped")

    def start_thread(self) -> tuple[threading.Thread, threading.Event]:
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop, True), name="tqctl-beat", daemon=True)
        thread.start()
        return thread, stop

    def close(self) -> None:
        """Give the lease up at once, so a standby need not wait for it to expire."""
        if self.is_leader:
            self.is_leader = False
            try:
                self.store.release(self.token)
            except (resp.RedisError, BrokerUnavailable):
                pass

    def tick_once(self) -> float:
        """Renew or take the lease, fire due slots if leading; return the seconds to sleep."""
        try:
            upcoming = self._lead_and_fire()
        except (resp.RedisError, BrokerUnavailable) as exc:
            if not self._failing:
                text = str(exc) if isinstance(exc, BrokerUnavailable) else describe_error(self.app.broker.url, exc)
                log.warning("beat: broker error, retrying every %gs: %s", self.tick, text)
            self._failing = True
            return self.tick
        except Exception:  # never let one bad tick end the loop (or a worker's embedded beat)
            log.exception("beat: tick failed; retrying in %gs", self.tick)
            return self.tick
        if self._failing:
            log.info("beat: broker reachable again")
            self._failing = False
        if not self.is_leader:
            return self.standby_poll
        delay = self.renew_every
        if upcoming is not None:
            delay = min(delay, (upcoming - self.clock.now()).total_seconds())
        return max(delay, 0.001)

    def _lead_and_fire(self) -> datetime | None:
        now = self.clock.now()
        if self.is_leader and not self.store.renew(self.token, self._lease_ms):
            self._step_down("lost the lease")
        if not self.is_leader:
            if not self.store.acquire(self.token, self._lease_ms):
                return None
            self.is_leader = True
            log.info("beat: leading as %s", self.token)
            dropped = self.store.prune(list(self.entries))
            if dropped:
                log.info("beat: dropped the state of removed entries: %s", ", ".join(dropped))
        return self._fire_due(now)

    @property
    def _lease_ms(self) -> int:
        return max(int(self.lease * 1000), 1)

    def _step_down(self, why: str) -> None:
        if self.is_leader:
            log.warning("beat: %s; standing by", why)
        self.is_leader = False

    def _fire_due(self, now: datetime) -> datetime | None:
        """Fire every due slot of every enabled entry; return the earliest upcoming slot."""
        names = list(self.entries)
        states = self.store.states(names)
        fresh = [name for name in names if states[name]["cursor"] is None]
        if fresh:
            self.store.init_entries(fresh, now)
            states.update(self.store.states(fresh))
        upcoming: list[datetime] = []
        for name, entry in self.entries.items():
            state = states[name]
            if not state["enabled"]:
                continue
            slots, capped = due_slots(entry.schedule, state["cursor"], now, self.catchup_limit)
            if capped:
                log.warning(
                    "beat: %s missed more than %d slots; firing the latest %d, skipping older ones",
                    name,
                    self.catchup_limit,
                    self.catchup_limit,
                )
            for slot in slots:
                result = self.store.fire(self.token, name, slot)
                if result == NOT_LEADER:
                    self._step_down("lost the lease before firing")
                    return None
                if result == FIRED:  # ALREADY (settled by an earlier leader) and DISABLED: nothing to send
                    self._send(entry, slot)
            upcoming.append(entry.schedule.next_slot(max(now, state["cursor"])))
        return min(upcoming, default=None)

    def _send(self, entry: Entry, slot: datetime) -> None:
        try:
            send_entry(self.app, entry, slot)
        except Exception as exc:  # the slot is claimed: log it as lost, keep the loop alive
            log.error(
                "beat: could not send %s (%s) for slot %s: %s",
                entry.name,
                entry.task,
                slot.isoformat(),
                one_line(exc),
            )
            return
        log.info("beat: sent %s (%s) for slot %s", entry.name, entry.task, slot.isoformat())


class BeatControl:
    """Read and steer beat's entries from any process while beat runs (state is in the broker)."""

    def __init__(self, app: Any, clock: Clock = SYSTEM_CLOCK) -> None:
        self.app = app
        self.clock = clock
        self._entries = load_entries(app)
        self._store: BeatStore | None = None

    @property
    def store(self) -> BeatStore:
        if self._store is None:
            self._store = open_store(self.app)
        return self._store

    def definition(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self._entries) or "none"
            raise UnknownEntry(f"no beat entry {name!r} (known: {known})") from None

    def entries(self) -> list[dict[str, Any]]:
        names = list(self._entries)
        states = self.store.states(names)
        now = self.clock.now()
        return [self._row(self._entries[name], states[name], now) for name in names]

    def entry(self, name: str) -> dict[str, Any]:
        entry = self.definition(name)
        return self._row(entry, self.store.states([name])[name], self.clock.now())

    def leader(self) -> dict[str, Any] | None:
        """The lease holder's token (``host:pid:random``) and remaining lease, or None."""
        return self.store.holder()

    def run_now(self, name: str) -> str:
        """Send one run now; the slot bookkeeping (cursor, last run, count) is left alone."""
        return send_entry(self.app, self.definition(name))

    def enable(self, name: str) -> dict[str, Any]:
        self.definition(name)
        self.store.set_enabled(name, True, self.clock.now())
        return self.entry(name)

    def disable(self, name: str) -> dict[str, Any]:
        self.definition(name)
        self.store.set_enabled(name, False, self.clock.now())
        return self.entry(name)

    @staticmethod
    def _row(entry: Entry, state: dict[str, Any], now: datetime) -> dict[str, Any]:
        cursor = state["cursor"] or now
        nxt = entry.schedule.next_slot(cursor) if state["enabled"] else None
        last = state["last_run"]
        return {
            "name": entry.name,
            "task": entry.task,
            "schedule": entry.schedule.describe(),
            "args": list(entry.args),
            "kwargs": entry.kwargs,
            "options": entry.options,
            "enabled": state["enabled"],
            "last_run": last.isoformat() if last else None,
            "next_run": nxt.isoformat() if nxt else None,
            "total_run_count": state["total_run_count"],
        }


# Celery's in-process scheduler API (``from celery import beat``; ``beat.Scheduler(app).tick()``).
from engine.beat_scheduler import ScheduleEntry, Scheduler, event_t, schedstate  # noqa: E402
from engine.beat_service import Service, beat_nodename  # noqa: E402

__all__ += ["ScheduleEntry", "Scheduler", "Service", "beat_nodename", "event_t", "schedstate"]
