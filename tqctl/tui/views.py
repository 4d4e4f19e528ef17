"""Rows for the screens, derived from the model: pure functions, no widgets, no I/O.

Kept apart from ``model.py`` so each screen's figures can be tested on their own and the model
stays a plain store. Every ``*_rows`` function reads the model at ``model.now()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.history import fingerprint, split_exception
from tqctl.tui.model import ConsoleModel
from tqctl.tui.snapshot import QueueSample

REPLY_FRESH = 10.0  # an inspect answer younger than this proves a worker is alive
OLD_MESSAGE = 300.0


@dataclass
class WorkerRow:
    hostname: str
    online: bool
    events: bool  # sends task events (-E)
    pool: str | None = None
    current: int | None = None
    low: int | None = None
    high: int | None = None
    active: int | None = None
    reserved: int | None = None
    processed: int | None = None
    failed: int = 0
    load: float | None = None
    heartbeat_age: float | None = None
    queues: list[str] = field(default_factory=list)
    pid: int | None = None
    software: str | None = None
    active_tasks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        if not self.online:
            return "offline"
        return "online" if self.events else "no-events"


@dataclass
class QueueRow:
    name: str
    depth: int
    oldest_age: float | None
    in_rate: float | None
    out_rate: float
    drain: float | None  # seconds to empty at the current rates; None: not draining
    consumers: list[str]
    warnings: list[str]


@dataclass
class Member:
    id: str
    name: str | None
    exception: str | None
    when: float | None
    worker: str | None
    stored: bool  # the original message is kept: faithful retry possible


@dataclass
class GroupRow:
    fingerprint: str
    name: str | None
    exc_type: str | None
    sample: str | None
    total: int
    first_seen: float | None
    last_seen: float | None
    members: list[Member]

    @property
    def open(self) -> int:
        return len(self.members)

    @property
    def stored(self) -> int:
        return sum(1 for m in self.members if m.stored)


def worker_rows(model: ConsoleModel) -> list[WorkerRow]:
    now = model.now()
    snap = model.snapshot
    replies = snap.replies if snap is not None else {}
    fresh = snap is not None and now - snap.taken_at <= REPLY_FRESH
    rows: dict[str, WorkerRow] = {}
    for host, view in model.state.workers.items():
        rows[host] = WorkerRow(
            host,
            online=view.alive(now),
            events=True,
            active=view.active,
            processed=view.processed,
            failed=view.failed,
            load=view.loadavg[0] if view.loadavg else None,
            heartbeat_age=None if view.last_heartbeat is None else now - view.last_heartbeat,
            pid=view.pid,
            software=" ".join(p for p in (view.sw_ident, view.sw_ver) if p) or None,
        )
    for host, reply in replies.items():
        row = rows.setdefault(host, WorkerRow(host, online=False, events=False))
        row.online = row.online or fresh
        row.pool = reply.pool_kind
        row.current, row.low, row.high = reply.concurrency()
        if reply.active is not None:
            row.active = len(reply.active)
            row.active_tasks = reply.active
        if reply.reserved is not None:
            row.reserved = len(reply.reserved)
        if row.processed is None:
            row.processed = reply.processed
        row.queues = list(reply.queues if reply.queues is not None else model.known_queues.get(host, []))
        row.pid = row.pid or (reply.stats or {}).get("pid")
    health = model.state.stream_health(now)
    silent = set(health["workers_without_task_events"])
    for row in rows.values():
        if not row.queues:  # a poll without its answer (late, or not yet): what it consumed last time
            row.queues = list(model.known_queues.get(row.hostname, []))
        seen = model.state.workers.get(row.hostname)
        if row.hostname not in silent or seen is None:
            continue
        # An idle worker has sent no task event yet either: only one that works unseen is flagged.
        first = model.first_processed.get(row.hostname, seen.processed or 0)
        if seen.processed_rate.rate(now) > 0 or (seen.processed or 0) > first:
            row.events = False
    return sorted(rows.values(), key=lambda r: (not r.online, r.hostname))


def queue_rows(model: ConsoleModel, workers: list[WorkerRow] | None = None) -> list[QueueRow]:
    snap = model.snapshot
    if snap is None:
        return []
    now = model.now()
    workers = worker_rows(model) if workers is None else workers
    rows = []
    sampled = {sample.name for sample in snap.queues}
    # A queue a listed worker consumes is shown even when the broker has no key for it (empty, and
    # its binding gone after a broker restart) and this poll missed the worker's answer.
    idle = sorted({q for w in workers for q in w.queues if q not in sampled})
    for sample in [*snap.queues, *(QueueSample(name, 0) for name in idle)]:
        consumers = [w.hostname for w in workers if w.online and sample.name in w.queues]
        out_rate = model.out_rate(sample.name)
        slope = model.depth_slope(sample.name)
        in_rate = None if slope is None else max(0.0, out_rate + slope)
        net = out_rate - (in_rate if in_rate is not None else 0.0)
        drain = 0.0 if sample.depth == 0 else (sample.depth / net if net > 0 else None)
        oldest = None if sample.oldest_sent_at is None else max(0.0, now - sample.oldest_sent_at)
        warnings = []
        if not consumers and sample.depth:  # an empty queue nobody consumes waits for nothing
            warnings.append("no consumer")
        if oldest is not None and oldest > OLD_MESSAGE:
            warnings.append("old messages")
        if sample.depth and consumers and net <= 0 and in_rate is not None and in_rate > 0:
            warnings.append("growing")
        rows.append(QueueRow(sample.name, sample.depth, oldest, in_rate, out_rate, drain, consumers, warnings))
    return sorted(rows, key=lambda r: (-r.depth, r.name))


def failure_groups(model: ConsoleModel) -> list[GroupRow]:
    """The inbox: stored failures (history) grouped by fingerprint, plus failures seen only as events."""
    groups: dict[str, GroupRow] = {}
    for info in model.failure_groups_stored:
        groups[info["fingerprint"]] = GroupRow(
            info["fingerprint"],
            info.get("task_name"),
            info.get("exc_type"),
            info.get("sample"),
            int(info.get("count") or 0),
            info.get("first_seen"),
            info.get("last_seen"),
            [],
        )
    seen: set[str] = set()
    for failure in model.failures_stored:
        fp = failure.get("fingerprint") or ""
        group = groups.get(fp)
        if group is None:
            group = groups[fp] = GroupRow(
                fp, failure.get("name"), failure.get("exc_type"), failure.get("exc_message"), 0, None, None, []
            )
        group.members.append(
            Member(
                failure["id"],
                failure.get("name"),
                failure.get("exception"),
                failure.get("finished"),
                failure.get("worker"),
                True,
            )
        )
        seen.add(failure["id"])
    for task in model.state.failures(limit=5000):
        if task.uuid in seen or task.uuid in model.dismissed:
            continue
        if model.history_available and task.uuid in model.backfilled_failures:
            continue  # replayed from the history and no longer in the inbox: retried or discarded
        exc_type, message = split_exception(task.exception)
        fp = fingerprint(task.name or "", exc_type, message)
        group = groups.get(fp)
        if group is None:
            group = groups[fp] = GroupRow(fp, task.name, exc_type, message, 0, None, None, [])
        group.members.append(
            Member(task.uuid, task.name, task.exception, task.failed or task.timestamp, task.worker, False)
        )
    for group in groups.values():
        whens = [m.when for m in group.members if m.when is not None]
        group.total = max(group.total, group.open)
        if whens:
            group.first_seen = min([*whens, *([group.first_seen] if group.first_seen else [])])
            group.last_seen = max([*whens, *([group.last_seen] if group.last_seen else [])])
        group.members.sort(key=lambda m: m.when or 0.0, reverse=True)
    return sorted((g for g in groups.values() if g.open or g.total), key=lambda g: (g.open == 0, -(g.last_seen or 0.0)))


def eta_rows(model: ConsoleModel) -> list[dict[str, Any]]:
    """ETA tasks: the broker's delayed set, plus what workers hold in memory (their ``inspect
    scheduled`` replies: Celery's, and ours on RabbitMQ)."""
    snap = model.snapshot
    if snap is None:
        return []
    rows = {row["id"]: dict(row, source="broker") for row in snap.delayed if row.get("id")}
    for host, reply in snap.replies.items():
        for item in reply.scheduled or []:
            request = item.get("request") or {}
            task_id = request.get("id")
            if task_id and task_id not in rows:
                rows[task_id] = {
                    "id": task_id,
                    "name": request.get("name"),
                    "eta": _eta(item.get("eta")),
                    "queue": (request.get("delivery_info") or {}).get("routing_key"),
                    "args": repr(request.get("args")),
                    "source": host,
                }
    return sorted(rows.values(), key=lambda r: r.get("eta") or 0.0)


def _eta(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        from engine.protocol.task import parse_time

        try:
            parsed = parse_time(value)
        except ValueError:
            return None
        return parsed.timestamp() if parsed else None
    return None


def health_lines(model: ConsoleModel, workers: list[WorkerRow]) -> list[str]:
    """Blind spots: what the console cannot see, in words."""
    lines = []
    silent = [w.hostname for w in workers if w.online and not w.events]
    if silent:
        names = ", ".join(silent[:3]) + (f" +{len(silent) - 3}" if len(silent) > 3 else "")
        lines.append(f"⚠ no task events from {names} (started without -E?) · E enables them")
    stats = model.state.stats(model.now())
    if stats["evicted"]:
        lines.append(f"ⓘ {stats['evicted']:,} old tasks dropped to stay under the memory cap")
    if model.snapshot is not None and model.snapshot.inspect_ms and model.snapshot.inspect_ms > 1500:
        lines.append(f"⚠ inspect replies slow ({model.snapshot.inspect_ms / 1000:.1f}s)")
    return lines
