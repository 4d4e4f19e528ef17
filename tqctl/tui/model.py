"""The console's model: ClusterState plus what the snapshots and rates add. UI thread only.

The feed never touches this object: it posts batches and snapshots, the App applies them here,
and screens read from here on a timer. ``version`` moves on every change so a screen can skip
re-rendering when nothing happened. No I/O; time comes from the injected ``clock`` (fixed in
the demo, so screenshots are reproducible).
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from engine.events.rates import KeyedCounters
from engine.events.state import ClusterState
from tqctl.tui.snapshot import ClusterSnapshot

SERIES_SECONDS = 60
RATE_WINDOW = 10.0
DEPTH_WINDOW = 30.0
FAILURES_POLLED = 500  # the probe reads at most this many stored failures per poll
OUTCOMES = {"task-succeeded": "ok", "task-failed": "failed"}


class ConsoleModel:
    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        max_tasks: int = 100_000,
        max_bytes: int | None = 256 * 1024 * 1024,
    ) -> None:
        self.clock = clock
        self.state = ClusterState(max_tasks=max_tasks, max_bytes=max_bytes, rate_window=RATE_WINDOW)
        self.snapshot: ClusterSnapshot | None = None
        self.version = 0
        self.connected = True
        self.error: str | None = None
        self.retry_in: float | None = None
        self.down_since: float | None = None
        self.down_what = "broker"  # or "result backend": on RabbitMQ, the Redis keeping history
        self.last_snapshot_at: float | None = None
        self.events_total = 0
        self.last_lag = 0.0
        self.max_lag = 0.0
        self._per_second: dict[str, dict[int, int]] = {"ok": {}, "failed": {}}
        self._out_by_queue = KeyedCounters(RATE_WINDOW)
        self._depths: dict[str, deque[tuple[float, int]]] = {}
        self._failure_groups: tuple[dict[str, Any], ...] = ()
        self._failures: tuple[dict[str, Any], ...] = ()
        self._dead: tuple[dict[str, Any], ...] = ()
        self.dead_count = 0
        self.beat: tuple[dict[str, Any], ...] | None = None
        self.beat_leader: dict[str, Any] | None = None
        self.beat_note: str | None = None
        self.beat_read_at: float | None = None  # when ``beat`` was read (every few seconds)
        self.server: str | None = None
        self.queue_note: str | None = None
        self.backend_down: str | None = None  # why AMQP's Redis result backend could not be read
        self.history_missing: str | None = None  # why the event feed could not replay the history yet
        # Tasks this console revoked: an ETA task waits in the broker until due (then a worker
        # drops it), so nothing else says so until then.
        self.revoked_here: set[str] = set()
        self.history_available = False
        self.first_processed: dict[str, int] = {}  # ``processed`` of each worker when first seen
        self.known_queues: dict[str, list[str]] = {}  # each worker's queues, as it last answered
        self.dismissed: set[str] = set()  # failures that left the stored inbox (retried or deleted)
        # failures known only from the replayed history: the stored inbox says whether they are open
        self.backfilled_failures: set[str] = set()

    def now(self) -> float:
        return self.clock()

    def touch(self) -> None:
        self.version += 1

    # -- ingestion ---------------------------------------------------------------------------------
    def apply_events(
        self, events: Iterable[dict[str, Any]], created: float | None = None, backfill: bool = False
    ) -> int:
        """Fold a batch in; returns how many events it held. ``created`` (feed time) gives the lag."""
        shown: list[str] = []
        if backfill and self.state.tasks(limit=1):
            shown, events = self._late_history(events)
        n = 0
        state, per_second, out_by_queue = self.state, self._per_second, self._out_by_queue
        for event in events:
            n += 1
            state.apply(event)
            etype = event.get("type")
            if backfill:
                if etype == "task-failed":
                    self.backfilled_failures.add(event.get("uuid") or "")
                elif etype == "task-received" and isinstance(event.get("queue"), str):
                    task = state.task(event.get("uuid") or "")
                    if task is not None and task.queue is None:
                        task.queue = sys.intern(event["queue"])  # the history's queue (state takes it from task-sent)
                continue
            if etype == "task-failed":
                self.backfilled_failures.discard(event.get("uuid") or "")
            if etype in ("worker-online", "worker-heartbeat") and isinstance(event.get("processed"), int):
                self.first_processed.setdefault(event.get("hostname") or "", event["processed"])
            if etype == "task-received":
                queue = event.get("queue")
                task = state.task(event.get("uuid") or "")
                if queue is None:
                    queue = task.queue if task is not None else None
                elif task is not None and task.queue is None and isinstance(queue, str):
                    task.queue = sys.intern(queue)  # Celery sends it with task-sent only; ours with task-received
                if isinstance(queue, str):
                    out_by_queue.add(queue, _received_at(event, self.clock))
            outcome = OUTCOMES.get(etype) if isinstance(etype, str) else None
            if outcome is not None:
                sec = int(_received_at(event, self.clock))
                bucket = per_second[outcome]
                bucket[sec] = bucket.get(sec, 0) + 1
        self.events_total += n
        if created is not None:
            self.last_lag = max(0.0, self.clock() - created)
            self.max_lag = max(self.max_lag, self.last_lag)
        if n:
            if shown:
                _move_to_top(self.state, shown)
            self._trim_series()
            self.touch()
        return n

    def _late_history(self, events: Iterable[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
        """History replayed into a console already showing tasks: after a reconnect, or on RabbitMQ
        once its Redis result backend answers again while live events flowed meanwhile. It was
        applied as news: a task seen live got its events twice (two "succeeded" in its timeline)
        and the older history jumped above the live tasks. Returns the tasks shown (newest first,
        to be put back on top) and only the history events not known yet."""
        state, events = self.state, list(events)
        known: dict[str, set[str]] = {}
        for uuid in {e.get("uuid") or "" for e in events}:
            if (task := state.task(uuid)) is not None:
                known[uuid] = {entry[0] for entry in task.timeline}
        fresh = [e for e in events if e.get("type") not in known.get(e.get("uuid") or "", ())]
        return ([task.uuid for task in state.tasks()] if fresh else []), fresh

    def _trim_series(self) -> None:
        horizon = int(self.clock()) - 2 * SERIES_SECONDS
        for bucket in self._per_second.values():
            if len(bucket) > 3 * SERIES_SECONDS:
                for sec in [s for s in bucket if s < horizon]:
                    del bucket[sec]

    def apply_snapshot(self, snap: ClusterSnapshot) -> None:
        self.snapshot = snap
        self._adopt_inspected(snap)
        for host, reply in snap.replies.items():
            if reply.queues is not None:
                self.known_queues[host] = list(reply.queues)
        self.last_snapshot_at = snap.taken_at
        for sample in snap.queues:
            samples = self._depths.setdefault(sample.name, deque())
            samples.append((snap.taken_at, sample.depth))
            while len(samples) > 2 and samples[0][0] < snap.taken_at - DEPTH_WINDOW:
                samples.popleft()
        if snap.failures is not None:
            self.learn_names((f.get("id"), f.get("name")) for f in snap.failures)
            if len(snap.failures) < FAILURES_POLLED:  # the whole inbox: what left it was retried or deleted
                kept = {f.get("id") for f in snap.failures}
                self.dismissed.update(f["id"] for f in self._failures if f.get("id") not in kept)
                if len(self.dismissed) > 100_000:
                    self.dismissed.clear()
            self._failures = snap.failures
            self.history_available = True
        if snap.failure_groups is not None:
            self._failure_groups = snap.failure_groups
        if snap.dead_letters is not None:
            self._dead = snap.dead_letters
            self.dead_count = snap.dead_count or len(snap.dead_letters)
        if snap.beat is not None or snap.beat_note is not None:
            self.beat, self.beat_leader, self.beat_note = snap.beat, snap.beat_leader, snap.beat_note
            self.beat_read_at = snap.taken_at
        if snap.server:
            self.server = snap.server
        self.queue_note = snap.queue_note
        # AMQP's Redis result backend away: queues and workers stay live, the banner stays up until
        # a poll reads the history again (fast polls do not read it, so they leave it as it is)
        if snap.backend_note is not None:
            self.backend_down = snap.backend_note
        elif snap.failures is not None:
            self.backend_down = None
        self.set_connection(True)
        self.touch()

    def _adopt_inspected(self, snap: ClusterSnapshot) -> None:
        """Tasks a worker reports as active or reserved that the event stream never showed (they began
        before the console attached, or the worker runs without -E) become known, as received/started."""
        state = self.state
        for host, reply in snap.replies.items():
            view = state.workers.get(host)
            seen = (view.task_events_seen, view.last_task_event) if view is not None else (False, None)
            self._adopt(host, reply, snap.taken_at)
            view = state.workers.get(host)
            if view is not None:  # inspected tasks are not task events from that worker
                view.task_events_seen, view.last_task_event = seen

    def _adopt(self, host: str, reply: Any, taken_at: float) -> None:
        state = self.state
        for kind, requests in (("task-received", reply.reserved), ("task-started", reply.active)):
            for request in requests or ():
                uid = request.get("id")
                if not isinstance(uid, str):
                    continue
                task = state.task(uid)
                if task is not None and task.name is None:
                    self.learn_names([(uid, request.get("name"))])
                if task is not None and task.state not in (None, "PENDING", "RECEIVED"):
                    continue
                if task is not None and task.state == "RECEIVED" and kind == "task-received":
                    continue
                started = request.get("time_start")
                ts = float(started) if isinstance(started, (int, float)) else taken_at
                info = request.get("delivery_info") or {}
                base = {"uuid": uid, "hostname": host, "timestamp": ts, "local_received": taken_at}
                state.apply(
                    {
                        **base,
                        "type": "task-received",
                        "name": request.get("name"),
                        "args": _repr(request.get("args")),
                        "kwargs": _repr(request.get("kwargs")),
                        "queue": info.get("routing_key"),
                    }
                )
                if kind == "task-started":
                    state.apply({**base, "type": "task-started"})

    def learn_names(self, named: Iterable[tuple[Any, Any]]) -> bool:
        """(task id, name) pairs from a source that carries the name (the stored failure inbox, a
        worker's inspect reply, a task's stored message or history record): a live task known
        without one gets it. Only task-received (and task-sent) carry the name, so a task whose
        task-received the console missed (it connected while the task was on its way, or the event
        was lost) showed "?" on every screen and was retried as a bare id. True when any was filled."""
        learned = False
        for uid, name in named:
            if not isinstance(uid, str) or not isinstance(name, str) or not name:
                continue
            task = self.state.task(uid)
            if task is not None and task.name is None:
                task.name = sys.intern(name)
                learned = True
        if learned:
            self.touch()
        return learned

    def set_connection(
        self, connected: bool, error: str | None = None, retry_in: float | None = None, what: str = "broker"
    ) -> None:
        if connected and (self.backend_down or self.history_missing):  # the broker answers; the backend does not
            connected, error, retry_in, what = False, self._backend_line(), None, "result backend"
        self.down_what = what
        if connected and not self.connected:
            self.down_since = None
        elif not connected and self.connected:
            self.down_since = self.clock()
        if (connected, error, retry_in) != (self.connected, self.error, self.retry_in):
            self.connected, self.error, self.retry_in = connected, error, retry_in
            self.touch()

    def _backend_line(self) -> str:
        cause = self.backend_down or self.history_missing or ""
        if self.history_missing:
            return f"history not replayed yet: live events only until it answers · {cause}"
        return cause

    # -- derived figures ---------------------------------------------------------------------------
    def series(self, kind: str, seconds: int = SERIES_SECONDS) -> list[int]:
        """Per-second counts of ``ok`` or ``failed`` outcomes over the last ``seconds``, oldest first."""
        bucket = self._per_second[kind]
        end = int(self.clock())
        return [bucket.get(sec, 0) for sec in range(end - seconds + 1, end + 1)]

    def out_rate(self, queue: str) -> float:
        return self._out_by_queue.rate(queue, self.clock())

    def depth_slope(self, queue: str) -> float | None:
        """Change of depth per second over the recent polls (positive: the queue grows)."""
        samples = self._depths.get(queue)
        if not samples or len(samples) < 2:
            return None
        (t0, d0), (t1, d1) = samples[0], samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else None

    def events_per_second(self) -> float:
        return self.state.rates(self.clock())["events_per_second"]

    def throughput(self) -> tuple[float, float]:
        rates = self.state.rates(self.clock())
        return rates["succeeded_per_second"], rates["failed_per_second"]

    @property
    def failures_stored(self) -> tuple[dict[str, Any], ...]:
        return self._failures

    @property
    def failure_groups_stored(self) -> tuple[dict[str, Any], ...]:
        return self._failure_groups

    @property
    def dead_letters(self) -> tuple[dict[str, Any], ...]:
        return self._dead

    def snapshot_age(self) -> float | None:
        return None if self.last_snapshot_at is None else max(0.0, self.clock() - self.last_snapshot_at)

    def stats(self) -> dict[str, Any]:
        out = self.state.stats(self.clock())
        out.update(events_total=self.events_total, last_lag=self.last_lag, max_lag=self.max_lag)
        return out


def _repr(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return repr(tuple(value) if isinstance(value, list) else value)


def _move_to_top(state: ClusterState, newest_first: list[str]) -> None:
    """Make these tasks the most recently updated again, keeping their order. ClusterState orders
    by receive sequence and has no call for this, so its two tables are reordered here (see
    engine/events/state.py: ``_ok``, ``_failed``, ``_seq``)."""
    for uuid in reversed(newest_first):
        task = state.task(uuid)
        if task is None:  # evicted to make room for the history
            continue
        table = state._failed if uuid in state._failed else state._ok
        table.move_to_end(uuid)
        state._seq += 1
        task.seq = state._seq


def _received_at(event: dict[str, Any], clock: Callable[[], float]) -> float:
    value = event.get("local_received")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return clock()
