"""Messages from threads (feed, action workers) to the UI thread. Plain data, nothing live."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from tqctl.tui.snapshot import ClusterSnapshot


class EventsBatch(Message):
    """Events received since the last batch, in arrival order (``backfill``: replayed history)."""

    def __init__(self, events: list[dict[str, Any]], created: float, backfill: bool = False) -> None:
        super().__init__()
        self.events = events
        self.created = created
        self.backfill = backfill


class SnapshotReady(Message):
    def __init__(self, snapshot: ClusterSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class FeedStatus(Message):
    """The broker became reachable or unreachable (``error`` says why; ``retry_in`` seconds)."""

    def __init__(
        self,
        connected: bool,
        error: str | None = None,
        retry_in: float | None = None,
        source: str = "feed",
        what: str = "broker",  # what cannot be reached: "broker", or "result backend" (AMQP's Redis)
        history_missing: str | None = None,  # why the history is not replayed yet; "" once it is
    ) -> None:
        super().__init__()
        self.what = what
        self.history_missing = history_missing
        self.connected = connected
        self.error = error
        self.retry_in = retry_in
        self.source = source


@dataclass
class Outcome:
    """What an action did: ``ok``, a one-line ``summary`` and the cluster's raw ``replies``."""

    ok: bool
    summary: str
    replies: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


class ActionDone(Message):
    def __init__(self, verb: str, target: str, outcome: Outcome) -> None:
        super().__init__()
        self.verb = verb
        self.target = target
        self.outcome = outcome


class ActionProgress(Message):
    def __init__(self, verb: str, done: int, total: int) -> None:
        super().__init__()
        self.verb = verb
        self.done = done
        self.total = total


class Loaded(Message):
    """An on-demand read finished (task detail, queue peek, audit log): ``key`` names what."""

    def __init__(self, key: str, data: Any, error: str | None = None) -> None:
        super().__init__()
        self.key = key
        self.data = data
        self.error = error
