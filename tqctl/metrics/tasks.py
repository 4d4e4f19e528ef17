"""Task counters and histograms, reduced from Celery events (ours and Celery 5's alike).

Counting is per event, not per state change: each ``task-*`` event is emitted once per attempt,
so a late or reordered event still counts once, where a state machine would drop it. The task's
name comes from the ``ClusterState`` the console uses (``task-succeeded`` does not carry it), and
the publish time for the wait histogram from its ``task-sent`` event, or from a ``sent_at`` the
caller saw in the message (the worker's endpoint does: no client events needed).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from engine.events.state import ClusterState, TaskView

# Event type → the ``state`` label (Celery's event names without the ``task-`` prefix).
COUNTED = {
    "task-sent": "sent",
    "task-received": "received",
    "task-started": "started",
    "task-succeeded": "succeeded",
    "task-failed": "failed",
    "task-retried": "retried",
    "task-revoked": "revoked",
    "task-rejected": "rejected",
}
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
UNKNOWN = "unknown"  # a task whose received/sent event this process never saw (it started later)
MAX_HINTS = 50_000


class TaskMetrics:
    """``tqctl_tasks_total``, ``tqctl_task_runtime_seconds`` and ``tqctl_task_wait_seconds``."""

    def __init__(self, registry: CollectorRegistry, state: ClusterState | None = None) -> None:
        self.state = state or ClusterState(max_tasks=20_000)
        self._sent_hints: OrderedDict[str, float] = OrderedDict()  # task id → publish time from its message
        self._unwaited: OrderedDict[str, None] = OrderedDict()  # started before its publish time was known
        self.total = Counter(
            "tqctl_tasks",
            "Task events seen, by task name and event (sent, received, started, succeeded, ...)",
            ["name", "state"],
            registry=registry,
        )
        self.runtime = Histogram(
            "tqctl_task_runtime_seconds",
            "Run time of finished tasks (succeeded or failed)",
            ["name"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.wait = Histogram(
            "tqctl_task_wait_seconds",
            "From publish to start (needs task-sent events or the message's sent_at)",
            ["name"],
            buckets=BUCKETS,
            registry=registry,
        )

    def note_sent(self, task_id: str, sent_at: float) -> None:
        """The publish time read from the message itself (bounded: oldest hints go first)."""
        self._sent_hints[task_id] = sent_at
        while len(self._sent_hints) > MAX_HINTS:
            self._sent_hints.popitem(last=False)

    def apply(self, event: dict[str, Any], now: float | None = None) -> None:
        """Fold one decoded event into the state and the metrics; never raises on odd input."""
        ran_retries = self._ran_retries(event)  # before this event merges its own
        self.state.apply(event, now)
        etype = event.get("type")
        label = COUNTED.get(etype) if isinstance(etype, str) else None
        uuid = event.get("uuid")
        if label is None or not isinstance(uuid, str):
            return
        view = self.state.task(uuid)
        name = (view.name if view is not None else None) or UNKNOWN
        self.total.labels(name, label).inc()
        if view is None:
            return
        if label == "started":
            self._started(uuid, name, view)
        elif label == "sent" and uuid in self._unwaited:
            # The client's batch came after the worker's start (its events are flushed later). Only
            # for a start that went unmeasured, and that came after this send: a retry's own
            # task-sent follows the previous attempt's start, and its wait is the next start's.
            del self._unwaited[uuid]
            if view.started is not None and view.sent is not None:
                if view.started >= view.sent or _same_attempt(event, ran_retries):
                    self.wait.labels(name).observe(max(view.started - view.sent, 0.0))
        elif label == "succeeded":
            runtime = event.get("runtime")
            if isinstance(runtime, (int, float)) and not isinstance(runtime, bool) and runtime >= 0:
                self.runtime.labels(name).observe(float(runtime))
        elif label == "failed" and view.started is not None and view.failed is not None:
            self.runtime.labels(name).observe(max(view.failed - view.started, 0.0))
        if label in ("succeeded", "failed", "revoked", "rejected"):
            # (An unmeasured start stays in ``_unwaited``, bounded: a quick task ends before the
            # client's batched task-sent arrives, and that event is what measures its wait.)
            self._sent_hints.pop(uuid, None)

    def _ran_retries(self, event: dict[str, Any]) -> int | None:
        """For a task-sent only (the one event that needs it): the retry count its task's started
        run was received with, as the state knew it before this event."""
        uuid = event.get("uuid")
        if event.get("type") != "task-sent" or not isinstance(uuid, str):
            return None
        known = self.state.task(uuid)
        return known.retries if known is not None else None

    def _started(self, uuid: str, name: str, view: TaskView) -> None:
        """One wait per start: from this attempt's publish if known now, else when its task-sent comes."""
        sent = self._sent_hints.pop(uuid, None) or view.sent
        if sent is not None and view.started is not None:
            self._unwaited.pop(uuid, None)
            self.wait.labels(name).observe(max(view.started - sent, 0.0))
            return
        self._unwaited[uuid] = None
        while len(self._unwaited) > MAX_HINTS:
            self._unwaited.popitem(last=False)


def _same_attempt(sent: dict[str, Any], ran_retries: int | None) -> bool:
    """A task-sent stamped after the start it announces is still that run's: Celery's client stamps
    the event after its publish returns, and a worker on the other CPU can start the task first (a
    loaded machine: the wait of one such task in a hundred went unmeasured). It is, when it names
    the retry count the started run was received with; a retry's own task-sent names the next."""
    retries = sent.get("retries") or 0
    return ran_retries is not None and isinstance(retries, int) and retries == ran_retries
