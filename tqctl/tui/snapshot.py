"""What one poll of the cluster returns: plain frozen data, built off the UI thread.

The feed's probe fills these from the broker and from inspect replies; the demo builds them from
fixed data. The model only reads them, so a snapshot can be handed between threads safely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class QueueSample:
    name: str
    depth: int
    oldest_sent_at: float | None = None  # ``sent_at`` header of the oldest waiting message, when it has one


@dataclass(frozen=True)
class WorkerReply:
    """One worker's answers to the inspect broadcasts of a poll (None: it did not answer that one)."""

    hostname: str
    stats: dict[str, Any] | None = None
    active: list[dict[str, Any]] | None = None
    reserved: list[dict[str, Any]] | None = None
    queues: list[str] | None = None
    scheduled: list[dict[str, Any]] | None = None

    @property
    def pool_kind(self) -> str | None:
        pool = (self.stats or {}).get("pool") or {}
        kind = pool.get("implementation")
        if isinstance(kind, str):
            return kind.rsplit(":", 1)[-1].replace("TaskPool", "prefork").lower()
        return None

    def concurrency(self) -> tuple[int | None, int | None, int | None]:
        """(current, min, max): our ``autoscale`` is ``[max, min]``, Celery's ``autoscaler`` a dict."""
        stats = self.stats or {}
        pool = stats.get("pool") or {}
        current = pool.get("max-concurrency")  # Celery's pool limit: the size at start, not after pool_grow
        processes = pool.get("processes")
        if isinstance(processes, list) and processes and self.pool_kind == "prefork":
            current = len(processes)
        elif isinstance(pool.get("threads"), int):  # thread pools (Celery's and ours) count their threads
            current = pool["threads"]
        scale = pool.get("autoscale") or stats.get("autoscaler")
        low = high = None
        if isinstance(scale, (list, tuple)) and len(scale) == 2:
            high, low = scale
        elif isinstance(scale, dict):
            high, low = scale.get("max"), scale.get("min")
        return current, low, high

    @property
    def processed(self) -> int | None:
        total = (self.stats or {}).get("total")
        return sum(total.values()) if isinstance(total, dict) else None


@dataclass(frozen=True)
class ClusterSnapshot:
    taken_at: float
    queues: tuple[QueueSample, ...] = ()
    replies: dict[str, WorkerReply] = field(default_factory=dict)
    failure_groups: tuple[dict[str, Any], ...] | None = None  # None: not polled this time (slow cadence)
    failures: tuple[dict[str, Any], ...] | None = None
    dead_letters: tuple[dict[str, Any], ...] | None = None
    dead_count: int | None = None
    delayed: tuple[dict[str, Any], ...] = ()
    delayed_count: int = 0
    delayed_readable: bool = True  # False on RabbitMQ: its delay levels cannot be listed or counted
    delayed_revoked: frozenset[str] = frozenset()  # ids among ``delayed`` revoked (by anyone), waiting to be dropped
    beat: tuple[dict[str, Any], ...] | None = None
    beat_leader: dict[str, Any] | None = None
    beat_note: str | None = None  # why beat entries are partial or missing
    server: str | None = None
    queue_note: str | None = None  # why queues may be missing from ``queues`` (a failed listing)
    backend_note: str | None = None  # AMQP: its Redis result backend failed (history not read this poll)
    inspect_ms: float | None = None
