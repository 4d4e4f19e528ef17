"""ClusterState: a pure, bounded reducer from Celery events to what the console shows.

Events are fire-and-forget PUB/SUB with no replay, they arrive batched and sometimes out of order,
from Celery 5.4/5.7 workers and from ours. So the model merges by state precedence (a late
``task-started`` fills in its fields but never moves a finished task back), never raises on odd
input, and keeps memory bounded: failures are kept longest because they are what an operator
comes for. No I/O, no clock reads: every time comes from the events or from the caller's ``now``.
"""

from __future__ import annotations

import heapq
import sys
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from engine import states
from engine.events.rates import ClusterRates, CounterRate

# Celery's mapping (celery.events.state.TASK_EVENT_TO_STATE); other task-* types become TYPE.upper().
TASK_EVENT_STATES = {
    "task-sent": states.PENDING,
    "task-received": states.RECEIVED,
    "task-started": states.STARTED,
    "task-succeeded": states.SUCCESS,
    "task-failed": states.FAILURE,
    "task-retried": states.RETRY,
    "task-revoked": states.REVOKED,
    "task-rejected": states.REJECTED,
}
# Wire fields copied per type (celery-wire.md §4).
_TASK_FIELDS = {
    "task-sent": (
        "name",
        "args",
        "kwargs",
        "root_id",
        "parent_id",
        "retries",
        "eta",
        "expires",
        "queue",
        "routing_key",
    ),
    "task-received": ("name", "args", "kwargs", "root_id", "parent_id", "retries", "eta", "expires"),
    "task-succeeded": ("result", "runtime"),
    "task-failed": ("exception", "traceback"),
    "task-retried": ("exception", "traceback"),
    "task-rejected": ("requeue",),
    "task-revoked": ("terminated", "signum", "expired"),
}
_WORKER_COUNTERS = {"task-succeeded": "succeeded", "task-failed": "failed", "task-retried": "retried"}
_INTERNED = frozenset({"name", "queue", "routing_key"})
TASK_BASE_BYTES = 760  # object, slots, floats, table entries of one TaskView (calibrated by the bench)
TIMELINE_ENTRY_BYTES = 72
TIMELINE_MAX = 12
DEFAULT_FREQ = 2.0


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def iso(ts: float | None) -> str | None:
    """POSIX seconds → ISO-8601 UTC, the form every ``--json`` output uses."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


@dataclass(slots=True)
class WorkerView:
    """One worker as seen through its events. ``last_heartbeat`` is the *local* receive time, so
    liveness does not depend on the worker's clock being right."""

    hostname: str
    heartbeat_window: float = 2.0
    pid: int | None = None
    sw_ident: str | None = None
    sw_ver: str | None = None
    sw_sys: str | None = None
    freq: float = DEFAULT_FREQ
    active: int | None = None
    processed: int | None = None
    loadavg: list[float] | None = None
    utcoffset: float | None = None
    clock: int | None = None
    last_heartbeat: float | None = None
    last_seen: float | None = None
    last_task_event: float | None = None
    drift: float | None = None  # local receive time minus sender timestamp: clock skew plus transport lag
    offline: bool = False
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    task_events_seen: bool = False
    processed_rate: CounterRate = field(default_factory=CounterRate, repr=False)

    @property
    def heartbeat_expires(self) -> float | None:
        """Celery's rule: gone when nothing arrived within ``freq × window`` s (HEARTBEAT_EXPIRE_WINDOW)."""
        return None if self.last_seen is None else self.last_seen + self.freq * self.heartbeat_window

    def alive(self, now: float) -> bool:
        expires = self.heartbeat_expires
        return not self.offline and expires is not None and now <= expires

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "alive": self.alive(now),
            **_plain(self, _WORKER_KEYS, _WORKER_TIMES),
            "processed_per_second": self.processed_rate.rate(now),
        }


@dataclass(slots=True)
class TaskView:
    """One task merged from all its events. args/kwargs/result/exception stay the repr strings sent on
    the wire: they are for display, never for re-execution."""

    uuid: str
    name: str | None = None
    state: str | None = None
    timestamp: float | None = None  # sender time of the event that set ``state``
    args: str | None = None
    kwargs: str | None = None
    result: str | None = None
    exception: str | None = None
    traceback: str | None = None
    worker: str | None = None
    client: str | None = None  # hostname of the task-sent sender (gen<pid>@host)
    sent: float | None = None
    received: float | None = None
    started: float | None = None
    succeeded: float | None = None
    failed: float | None = None
    retried: float | None = None
    revoked: float | None = None
    rejected: float | None = None
    runtime: float | None = None
    retries: int | None = None
    root_id: str | None = None
    parent_id: str | None = None
    eta: str | None = None
    expires: str | None = None
    queue: str | None = None
    routing_key: str | None = None
    terminated: bool | None = None
    signum: int | None = None
    expired: bool | None = None
    requeue: bool | None = None
    # (type, sender timestamp, hostname), oldest first; a tuple of atoms, so the GC stops tracking it
    timeline: tuple[tuple[str, float, str | None], ...] = ()
    size: int = 0
    seq: int = 0  # receive order of the latest event: "newest first" without trusting senders' clocks

    def to_dict(self) -> dict[str, Any]:
        return {
            **_plain(self, _TASK_KEYS, _TASK_TIMES),
            "timeline": [{"type": t, "timestamp": iso(ts), "hostname": h} for t, ts, h in self.timeline],
        }

    def matches(self, needle: str) -> bool:
        """Case-insensitive substring search over the fields an operator would type from memory."""
        for value in (self.uuid, self.name, self.args, self.kwargs, self.result, self.exception, self.worker):
            if value and needle in value.lower():
                return True
        return False


def _plain(view: WorkerView | TaskView, keys: tuple[str, ...], times: frozenset[str]) -> dict[str, Any]:
    return {k: iso(getattr(view, k)) if k in times else getattr(view, k) for k in keys}


_WORKER_TIMES = frozenset({"last_heartbeat", "last_seen", "last_task_event"})
_WORKER_KEYS = tuple(
    f.name for f in fields(WorkerView) if f.name not in ("hostname", "heartbeat_window", "processed_rate")
)
_TASK_TIMES = frozenset({"timestamp", *(etype[5:] for etype in TASK_EVENT_STATES)})
_TASK_KEYS = tuple(f.name for f in fields(TaskView) if f.name not in ("timeline", "size", "seq"))


class ClusterState:
    """Workers and tasks reduced from events; see the module docstring for the merge and memory rules.

    ``max_tasks`` (and ``max_bytes``, an estimate from string lengths) bound the task table: the least
    recently updated non-failed task goes first; failures go only when they alone exceed the cap.
    ``heartbeat_window`` multiplies a worker's ``freq`` to decide liveness, as Celery does.
    """

    def __init__(
        self,
        max_tasks: int = 100_000,
        max_bytes: int | None = None,
        heartbeat_window: float = 2.0,
        rate_window: float = 10.0,
        max_workers: int = 1000,
    ) -> None:
        self.max_tasks = max(1, max_tasks)
        self.max_bytes = max_bytes
        self.heartbeat_window = heartbeat_window
        self.rate_window = rate_window
        self.max_workers = max(1, max_workers)
        self.workers: dict[str, WorkerView] = {}
        self._ok: OrderedDict[str, TaskView] = OrderedDict()  # tasks not in FAILURE, least recently updated first
        self._failed: OrderedDict[str, TaskView] = OrderedDict()
        self._children: dict[str, dict[str, None]] = {}  # parent id → child ids (an ordered set)
        self._bytes = 0
        self._applied = 0
        self._dropped = 0
        self._evicted = 0
        self._seq = 0
        self._clock = 0.0  # latest receive time seen: the default ``now`` for snapshots
        self._rates = ClusterRates(rate_window)

    # -- reducing ---------------------------------------------------------------------------

    def apply_many(self, events: Iterable[dict[str, Any]], now: float | None = None) -> None:
        for event in events:
            self.apply(event, now)

    def apply(self, event: dict[str, Any], now: float | None = None) -> None:
        """Fold one decoded event in. ``now`` is its local receive time; without it the receiver's
        ``local_received`` is used, then the event's own timestamp, so replays stay deterministic.
        ``timestamp`` is POSIX (UTC) in 5.4 and 5.7 alike, so ``utcoffset`` (int or float) is recorded
        on the worker but never applied: shifting by it, as Celery's receiver does, skews cross-zone views."""
        etype = event.get("type") if isinstance(event, dict) else None
        if not isinstance(etype, str):
            self._dropped += 1
            return
        etype = sys.intern(etype)  # shared by every timeline entry instead of one copy per event
        sent_at = _num(event.get("timestamp"))
        recv = now if now is not None else _num(event.get("local_received"))
        if recv is None:
            recv = sent_at if sent_at is not None else self._clock
        self._clock = max(self._clock, recv)
        hostname = event.get("hostname")
        hostname = sys.intern(hostname) if isinstance(hostname, str) else None
        if etype.startswith("task-"):
            if not self._task_event(etype, event, hostname, sent_at if sent_at is not None else recv, recv):
                self._dropped += 1
                return
        elif etype.startswith("worker-") and hostname is not None:
            self._worker_event(etype, event, self._worker(hostname), recv, sent_at)
        else:
            self._dropped += 1
            return
        self._applied += 1
        self._rates.events.add(recv)

    def _worker(self, hostname: str) -> WorkerView:
        worker = self.workers.get(hostname)
        if worker is None:
            if len(self.workers) >= self.max_workers:
                stale = min(self.workers.values(), key=lambda w: (not w.offline, w.last_seen or 0.0))
                del self.workers[stale.hostname]
            worker = self.workers[hostname] = WorkerView(
                hostname, self.heartbeat_window, processed_rate=CounterRate(self.rate_window)
            )
        return worker

    def _worker_event(
        self, etype: str, event: dict[str, Any], worker: WorkerView, recv: float, sent_at: float | None
    ) -> None:
        for key in ("pid", "active", "processed", "clock"):
            value = event.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(worker, key, value)
        for key in ("sw_ident", "sw_ver", "sw_sys"):
            value = event.get(key)
            if isinstance(value, str):
                setattr(worker, key, sys.intern(value))
        freq, offset, load = _num(event.get("freq")), _num(event.get("utcoffset")), event.get("loadavg")
        if freq is not None and freq > 0:
            worker.freq = freq
        if offset is not None:
            worker.utcoffset = offset
        if isinstance(load, list):
            worker.loadavg = load
        if sent_at is not None:
            worker.drift = recv - sent_at
        if etype == "worker-offline":
            worker.offline = True
            return
        worker.offline = False
        worker.last_heartbeat = recv
        worker.last_seen = recv if worker.last_seen is None else max(worker.last_seen, recv)
        if isinstance(worker.processed, int) and event.get("processed") is not None:
            worker.processed_rate.add(recv, worker.processed)

    def _task_event(self, etype: str, event: dict[str, Any], hostname: str | None, ts: float, recv: float) -> bool:
        uuid = event.get("uuid")
        if not isinstance(uuid, str) or not uuid:
            return False
        task = self._ok.get(uuid) or self._failed.get(uuid)
        if task is None:
            task = self._ok[uuid] = TaskView(uuid, size=TASK_BASE_BYTES + len(uuid))
            self._bytes += task.size
        before = task.size
        state = TASK_EVENT_STATES.get(etype) or etype[5:].upper()
        current = self._should_apply(task, state, ts)
        self._merge_fields(task, etype, event, current)
        slot = etype[5:]  # each known type has its own timestamp slot: task-sent → sent, ...
        if etype in TASK_EVENT_STATES and (current or getattr(task, slot) is None):
            setattr(task, slot, ts)
        if etype == "task-sent":
            task.client = hostname
        elif hostname is not None:
            if current or task.worker is None:
                task.worker = hostname
            self._count_worker_task(etype, self._worker(hostname), recv)
        if current:
            task.state, task.timestamp = state, ts
        self._seq += 1
        task.seq = self._seq
        timeline = task.timeline + ((etype, ts, hostname),)
        if len(timeline) > 1 and ts < timeline[-2][1]:
            timeline = tuple(sorted(timeline, key=lambda entry: entry[1]))
        task.size += TIMELINE_ENTRY_BYTES * (min(len(timeline), TIMELINE_MAX) - len(task.timeline))
        task.timeline = timeline[-TIMELINE_MAX:]
        if etype in ("task-succeeded", "task-failed"):
            self._rates.task_outcome(etype == "task-succeeded", task.name, recv)
        self._bytes += task.size - before
        self._refile(task)
        return True

    def _merge_fields(self, task: TaskView, etype: str, event: dict[str, Any], current: bool) -> None:
        """Copy the type's wire fields: all of them from a current event, only missing ones from a late
        one. The size estimate follows the strings the task holds."""
        for key in _TASK_FIELDS.get(etype, ()):
            value, old = event.get(key), getattr(task, key)
            if value is None or not (current or old is None):
                continue
            if key == "parent_id":
                if old is not None or not isinstance(value, str):
                    continue  # a task never changes parent, which keeps the children index simple
                self._children.setdefault(value, {})[task.uuid] = None
            if isinstance(value, str):
                if key in _INTERNED:
                    value = sys.intern(value)
                elif key == "root_id" and value == task.uuid:
                    value = task.uuid  # most tasks are their own root: share the string
                task.size += len(value) - (len(old) if isinstance(old, str) else 0)
            setattr(task, key, value)

    @staticmethod
    def _should_apply(task: TaskView, state: str, ts: float) -> bool:
        """Precedence decides; a retry (or a requeued rejection) starts a new attempt, so around it
        the sender's timestamps decide instead, as do ties between equally ranked states. News older
        than the last retry belongs to an earlier attempt and only fills in fields."""
        if task.state is None:
            return True
        previous = task.timestamp if task.timestamp is not None else float("-inf")
        if task.retried is not None and ts < task.retried:
            return False
        new_attempt = task.state == states.RETRY or (task.state == states.REJECTED and task.requeue)
        if new_attempt or state == states.RETRY:
            return ts >= previous
        new, cur = states.precedence(state), states.precedence(task.state)
        return new > cur or (new == cur and ts >= previous)

    @staticmethod
    def _count_worker_task(etype: str, worker: WorkerView, recv: float) -> None:
        worker.task_events_seen = True
        worker.offline = False
        worker.last_task_event = recv
        worker.last_seen = recv if worker.last_seen is None else max(worker.last_seen, recv)
        counter = _WORKER_COUNTERS.get(etype)
        if counter is not None:
            setattr(worker, counter, getattr(worker, counter) + 1)

    def _refile(self, task: TaskView) -> None:
        """Move the task to the young end of its table (failures or the rest), then evict while over budget."""
        failed = task.state == states.FAILURE
        home, other = (self._failed, self._ok) if failed else (self._ok, self._failed)
        if other.pop(task.uuid, None) is not None:
            home[task.uuid] = task
        else:
            home.move_to_end(task.uuid)
        while len(self._ok) + len(self._failed) > self.max_tasks or (
            self.max_bytes is not None and self._bytes > self.max_bytes and len(self._ok) + len(self._failed) > 1
        ):
            self._evict()

    def _evict(self) -> None:
        _, task = (self._ok if self._ok else self._failed).popitem(last=False)
        self._bytes -= task.size
        self._evicted += 1
        siblings = self._children.get(task.parent_id) if task.parent_id else None
        if siblings is not None:
            siblings.pop(task.uuid, None)
            if not siblings:
                self._children.pop(task.parent_id or "", None)

    # -- queries ----------------------------------------------------------------------------

    def task(self, uuid: str) -> TaskView | None:
        return self._ok.get(uuid) or self._failed.get(uuid)

    def tasks(
        self,
        state: str | None = None,
        name: str | None = None,
        worker: str | None = None,
        since: float | None = None,
        limit: int | None = None,
        text: str | None = None,
    ) -> list[TaskView]:
        """Matching tasks, most recently updated first (receive order, so senders' clock skew cannot
        reorder the list). ``since`` compares the sender timestamp of the task's current state."""
        needle = text.lower() if text else None
        found: list[TaskView] = []
        if limit is not None and limit <= 0:
            return found
        for t in reversed(self._failed.values()) if state == states.FAILURE else self._newest_first():
            if (
                (state is None or t.state == state)
                and (name is None or t.name == name)
                and (worker is None or t.worker == worker)
                and (since is None or (t.timestamp is not None and t.timestamp >= since))
                and (needle is None or t.matches(needle))
            ):
                found.append(t)
                if limit is not None and len(found) >= limit:
                    break
        return found

    def _newest_first(self) -> Iterator[TaskView]:
        """Both tables are kept in update order, so a lazy merge gives the newest without sorting."""
        return heapq.merge(
            reversed(self._ok.values()), reversed(self._failed.values()), key=lambda t: t.seq, reverse=True
        )

    def failures(self, limit: int | None = None) -> list[TaskView]:
        """Every kept failure, newest first: the console's failure inbox."""
        return self.tasks(state=states.FAILURE, limit=limit)

    def children(self, uuid: str) -> list[TaskView]:
        """Direct children (by ``parent_id``) still in memory, in the order first seen, for the family tree."""
        return [t for t in (self.task(c) for c in self._children.get(uuid, ())) if t is not None]

    def workers_alive(self, now: float) -> list[WorkerView]:
        return [w for w in self.workers.values() if w.alive(now)]

    # -- derived figures --------------------------------------------------------------------

    def rates(self, now: float) -> dict[str, Any]:
        """Per-second rates over the sliding window ending at ``now``."""
        out = self._rates.to_dict(now)
        out["processed_per_second_by_worker"] = {h: w.processed_rate.rate(now) for h, w in self.workers.items()}
        return out

    def stream_health(self, now: float) -> dict[str, Any]:
        """Is the console seeing everything? Flags live workers that send heartbeats but no task events
        (started without ``-E``), or whose ``processed`` count grows while task events stopped."""
        silent = []
        for worker in self.workers_alive(now):
            if worker.last_heartbeat is None:
                continue
            quiet = worker.last_task_event is None or worker.last_task_event < now - self.rate_window
            if not worker.task_events_seen or (quiet and worker.processed_rate.rate(now) > 0):
                silent.append(worker.hostname)
        return {
            "events_per_second": self._rates.events.rate(now),
            "workers_without_task_events": sorted(silent),
            "max_drift_seconds": max(
                (abs(w.drift) for w in self.workers.values() if w.drift is not None), default=None
            ),
            "last_event": iso(self._clock or None),
        }

    def stats(self, now: float | None = None) -> dict[str, Any]:
        now = self._clock if now is None else now
        return {
            "tasks": len(self._ok) + len(self._failed),
            "failures": len(self._failed),
            "approx_bytes": self._bytes,
            "events_applied": self._applied,
            "events_dropped": self._dropped,
            "evicted": self._evicted,
            "workers": len(self.workers),
            "events_per_second": self._rates.events.rate(now),
        }

    def snapshot(self, now: float | None = None, limit: int | None = None) -> dict[str, Any]:
        """Plain, JSON-ready dicts (snake_case keys, ISO-8601 times). ``now`` defaults to the latest
        receive time seen, so a snapshot of a replay is reproducible."""
        now = self._clock if now is None else now
        return {
            "generated_at": iso(now),
            "stats": self.stats(now),
            "stream_health": self.stream_health(now),
            "rates": self.rates(now),
            "workers": [w.to_dict(now) for w in sorted(self.workers.values(), key=lambda w: w.hostname)],
            "tasks": [t.to_dict() for t in self.tasks(limit=limit)],
        }
