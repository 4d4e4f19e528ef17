"""Celery's in-process ``beat.Scheduler``: entries kept in memory, one due task sent per ``tick()``.

For code written against Celery's scheduler API (``Scheduler(app).add(...)``, then ``tick()`` in
a loop, or a custom scheduler subclassing it). ``tick()`` returns the seconds to wait before the
next call, 0 when it just sent a task (or another entry is due at once). Time comes from
``app.now()``, so the clock beat reads can be moved alone. ``tqctl beat`` (``engine.beat.Beat``)
is the fleet-safe scheduler with a leader and a persistent store; this one has neither.
"""

from __future__ import annotations

import copy
import datetime as dt
import heapq
import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

from engine.exceptions import ImproperlyConfigured
from engine.interval_due import UTC, aware, every, schedstate

log = logging.getLogger("engine.beat")
DEFAULT_MAX_INTERVAL = 300.0
_ENTRY_FIELDS = frozenset({"task", "schedule", "args", "kwargs", "options", "relative"})
__all__ = ["DEFAULT_MAX_INTERVAL", "ScheduleEntry", "Scheduler", "event_t", "schedstate"]


class event_t(NamedTuple):  # noqa: N801 - Celery's name
    time: float
    priority: int
    entry: ScheduleEntry


def as_schedule(value: Any, relative: bool, app: Any) -> Any:
    """A number or timedelta becomes an interval; any object with ``is_due`` is used as it is."""
    if isinstance(value, int | float | dt.timedelta):
        return every(value, relative=relative, app=app)
    if getattr(value, "app", None) is None and hasattr(value, "app"):
        try:
            value.app = app
        except AttributeError:
            pass
    return value


class ScheduleEntry:
    """One periodic task: what to send, on which schedule, when it last ran and how often."""

    def __init__(
        self,
        name: str | None = None,
        task: str | None = None,
        last_run_at: dt.datetime | None = None,
        total_run_count: int | None = None,
        schedule: Any = None,
        args: Any = (),
        kwargs: Mapping[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        relative: bool = False,
        app: Any = None,
    ) -> None:
        self.app = app
        self.name = name
        self.task = task
        self.args = args
        self.kwargs = dict(kwargs or {})
        self.options = options if options is not None else {}
        self.relative = relative
        self.schedule = as_schedule(schedule, relative, app)
        self.last_run_at = last_run_at or self.default_now()
        self.total_run_count = total_run_count or 0

    def default_now(self) -> dt.datetime:
        now = getattr(self.schedule, "now", None)
        return now() if callable(now) else self.app.now()

    def next(self, last_run_at: dt.datetime | None = None) -> ScheduleEntry:
        """The entry after a run: last run now, one more in the count."""
        return ScheduleEntry(
            name=self.name,
            task=self.task,
            last_run_at=last_run_at or self.default_now(),
            total_run_count=self.total_run_count + 1,
            schedule=self.schedule,
            args=self.args,
            kwargs=self.kwargs,
            options=self.options,
            relative=self.relative,
            app=self.app,
        )

    __next__ = next

    def is_due(self) -> schedstate:
        return self.schedule.is_due(self.last_run_at)  # type: ignore[no-any-return]

    def __lt__(self, other: object) -> bool:
        """Heap ties are broken by identity: any order will do once time and priority are equal."""
        if isinstance(other, ScheduleEntry):
            return id(self) < id(other)
        return NotImplemented

    def __eq__(self, other: object) -> bool:
        """Equal when what a user can edit is equal (not the run count or the last run)."""
        if not isinstance(other, ScheduleEntry):
            return NotImplemented
        fields = ("task", "args", "kwargs", "options", "schedule")
        return all(getattr(self, f) == getattr(other, f) for f in fields)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<ScheduleEntry: {self.name} {self.task}{tuple(self.args)!r} {self.schedule!r}>"


class Scheduler:
    Entry = ScheduleEntry

    def __init__(
        self,
        app: Any,
        schedule: Mapping[str, Any] | None = None,
        max_interval: float | None = None,
        lazy: bool = False,
        **_: Any,
    ) -> None:
        self.app = app
        self.data: dict[str, ScheduleEntry] = {}
        self.max_interval = float(max_interval or app.conf.get("beat_max_loop_interval") or DEFAULT_MAX_INTERVAL)
        self._heap: list[event_t] | None = None
        self.old_schedulers: dict[str, ScheduleEntry] | None = None
        if not lazy:
            if schedule is None and hasattr(app, "finalize"):
                app.finalize()  # receivers of on_after_configure may add_periodic_task (engine.app_lifecycle)
            self.setup_schedule(schedule if schedule is not None else app.conf.get("beat_schedule") or {})

    @property
    def schedule(self) -> dict[str, ScheduleEntry]:
        return self.data

    def setup_schedule(self, schedule: Mapping[str, Any]) -> None:
        """``beat_schedule``'s entries (``{name: {"task":..., "schedule":..., "args":...}}``)."""
        for name, spec in schedule.items():
            if not isinstance(spec, Mapping) or "task" not in spec or "schedule" not in spec:
                raise ImproperlyConfigured(f"beat_schedule[{name!r}]: must be a dict with 'task' and 'schedule'")
            self.add(name=name, **{k: v for k, v in spec.items() if k in _ENTRY_FIELDS})

    def add(self, **fields: Any) -> ScheduleEntry:
        entry = self.Entry(**fields, app=self.app)
        self.schedule[entry.name or ""] = entry
        return entry

    @staticmethod
    def adjust(n: float, drift: float = -0.010) -> float:
        return n + drift if n and n > 0 else n

    def is_due(self, entry: ScheduleEntry) -> schedstate:
        return entry.is_due()

    def _is_due_failed(self, entry: ScheduleEntry) -> tuple[bool, float]:
        """One entry whose next run cannot be computed must not stop the others: retry it later."""
        log.exception("beat: cannot compute the next run of %r; trying again in %ss", entry.name, self.max_interval)
        return False, self.max_interval

    def _when(self, entry: ScheduleEntry, next_time_to_run: float) -> float:
        """The epoch second at which ``entry`` is next looked at (its clock's now + the delay)."""
        now = aware(entry.default_now(), UTC)
        return now.timestamp() + (self.adjust(next_time_to_run) or 0)

    def _checked(self, entry: ScheduleEntry) -> tuple[bool, float]:
        try:
            due, following = self.is_due(entry)
        except Exception:  # noqa: BLE001 - see _is_due_failed
            due, following = self._is_due_failed(entry)
        return due, following

    def populate_heap(self) -> None:
        self._heap = []
        for entry in self.schedule.values():
            due, following = self._checked(entry)
            self._heap.append(event_t(self._when(entry, 0 if due else following), 5, entry))
        heapq.heapify(self._heap)

    def schedules_equal(self, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
        if old is None or new is None:
            return old is new
        return old.keys() == new.keys() and all(new.get(name) == entry for name, entry in old.items())

    def reserve(self, entry: ScheduleEntry) -> ScheduleEntry:
        following = self.schedule[entry.name or ""] = entry.next()
        return following

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> Any:
        """Send the entry's task; a failure to send is logged, and the schedule goes on."""
        log.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
        try:
            return self.app.send_task(entry.task, args=list(entry.args), kwargs=entry.kwargs, **entry.options)
        except Exception:  # noqa: BLE001 - one broken entry must not stop beat
            log.exception("Message Error: couldn't apply scheduled task %s", entry.name)
            return None

    def tick(self) -> float:
        """Send at most one due task; the seconds until the next call (0: call again at once)."""
        if self._heap is None or not self.schedules_equal(self.old_schedulers, self.schedule):
            self.old_schedulers = copy.copy(self.schedule)
            self.populate_heap()
        heap = self._heap or []
        if not heap:
            return self.max_interval
        event = heap[0]
        entry = event.entry
        now = self._when(entry, 0)
        if event.time > now:
            return min(event.time - now, self.max_interval)
        due, following = self._checked(entry)
        top = heapq.heappop(heap)
        if top is not event:  # the heap changed while is_due ran: leave it to the next call
            heapq.heappush(heap, top)
            return min(top.time - self._when(top.entry, 0), self.max_interval)
        if due:
            after = self.reserve(entry)
            self.apply_entry(entry)
            heapq.heappush(heap, event_t(self._when(after, following), event.priority, after))
            return 0
        # Due by the heap, but the entry asks for later: requeue it there so the entries behind
        # it get their turn (and run one at once if it is now on top).
        delay = following if isinstance(following, int | float) else self.max_interval
        heapq.heappush(heap, event_t(self._when(entry, delay), event.priority, entry))
        return 0 if heap[0].entry is not entry else min(self.adjust(delay), self.max_interval)
