"""Sliding-window rate math for the cluster model: pure, bounded, driven by caller-supplied times.

Nothing here reads a clock: every method takes the time it should reason about, so the console can
replay recorded events and tests can use a fake clock. Memory is bounded by the window, not by the
number of events: counts are kept in one-second buckets and older buckets are dropped as time moves.
"""

from __future__ import annotations

import math
from collections import deque


class WindowCounter:
    """Occurrences per second over the last ``window`` seconds, in one-second buckets.

    Events mostly arrive in time order, so adding is an append or an increment of the last bucket;
    a late event (older than the newest bucket but inside the window) is inserted in its place.
    """

    __slots__ = ("window", "_buckets", "_first")

    def __init__(self, window: float = 10.0) -> None:
        self.window = float(window)
        self._buckets: deque[list[int]] = deque()  # [second, count], ascending by second
        self._first: float | None = None

    def add(self, t: float, n: int = 1) -> None:
        sec = math.floor(t)
        buckets = self._buckets
        if buckets and buckets[-1][0] == sec:
            buckets[-1][1] += n
        elif not buckets or sec > buckets[-1][0]:
            buckets.append([sec, n])
            horizon = sec - self.window
            while buckets and buckets[0][0] <= horizon:
                buckets.popleft()
        elif sec > buckets[-1][0] - self.window:
            self._insert_late(sec, n)
        else:
            return  # older than the window: it can never be reported
        if self._first is None or t < self._first:
            self._first = t

    def _insert_late(self, sec: int, n: int) -> None:
        buckets = self._buckets
        for i in range(len(buckets) - 1, -1, -1):
            if buckets[i][0] == sec:
                buckets[i][1] += n
                return
            if buckets[i][0] < sec:
                buckets.insert(i + 1, [sec, n])
                return
        buckets.appendleft([sec, n])

    def count(self, now: float) -> int:
        """Occurrences in the window ending at ``now`` (buckets after ``now`` are ignored)."""
        lo = now - self.window
        return sum(c for s, c in self._buckets if lo < s + 1 and s <= now)

    def rate(self, now: float) -> float:
        """Per second over the window; while younger than the window, over the time actually observed,
        so a console that just started does not under-report by window / age."""
        if self._first is None:
            return 0.0
        span = min(self.window, max(now - math.floor(self._first), 1.0))
        return self.count(now) / span

    def idle(self, now: float) -> bool:
        """True when nothing was counted inside the window (the counter can be discarded)."""
        return not self._buckets or self._buckets[-1][0] <= now - self.window


class KeyedCounters:
    """One :class:`WindowCounter` per key (task name, hostname), at most ``max_keys`` of them.

    Key cardinality comes from the wire, so it is capped: when full, idle counters are dropped first,
    then the oldest key.
    """

    __slots__ = ("window", "max_keys", "_counters")

    def __init__(self, window: float = 10.0, max_keys: int = 1000) -> None:
        self.window = window
        self.max_keys = max_keys
        self._counters: dict[str, WindowCounter] = {}

    def add(self, key: str, t: float, n: int = 1) -> None:
        counter = self._counters.get(key)
        if counter is None:
            if len(self._counters) >= self.max_keys:
                self._shrink(t)
            counter = self._counters[key] = WindowCounter(self.window)
        counter.add(t, n)

    def _shrink(self, now: float) -> None:
        for key in [k for k, c in self._counters.items() if c.idle(now)]:
            del self._counters[key]
        if len(self._counters) >= self.max_keys:
            del self._counters[next(iter(self._counters))]

    def rate(self, key: str, now: float) -> float:
        counter = self._counters.get(key)
        return counter.rate(now) if counter is not None else 0.0

    def rates(self, now: float) -> dict[str, float]:
        """Non-zero rates by key."""
        out = {k: c.rate(now) for k, c in self._counters.items()}
        return {k: v for k, v in out.items() if v > 0}

    def keys(self) -> list[str]:
        return list(self._counters)


class CounterRate:
    """Rate of a monotonic counter sampled now and then (a worker's ``processed`` in heartbeats).

    Works without task events (``-E`` off), which is exactly when the console needs it. A counter
    that goes down means the worker restarted: the new value counts from zero.
    """

    __slots__ = ("window", "_samples")

    def __init__(self, window: float = 10.0) -> None:
        self.window = float(window)
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, t: float, value: int) -> None:
        samples = self._samples
        if samples and t < samples[-1][0]:
            return  # a stale sample cannot be placed without breaking the deltas; drop it
        samples.append((t, value))
        # keep one sample at or before the window start so the rate covers the whole window
        while len(samples) > 2 and samples[1][0] <= t - self.window:
            samples.popleft()

    def rate(self, now: float) -> float:
        points = [s for s in self._samples if s[0] <= now]
        while len(points) > 2 and points[1][0] <= now - self.window:
            points.pop(0)
        if len(points) < 2 or points[-1][0] <= now - self.window:
            return 0.0
        done = 0
        for (_, before), (_, after) in zip(points, points[1:], strict=False):
            done += after - before if after >= before else after
        span = points[-1][0] - points[0][0]
        return done / span if span > 0 else 0.0


class ClusterRates:
    """The cluster-wide rates the console charts: all events, and task successes/failures overall and
    per task name. The reducer feeds it receive times; queries take the ``now`` to report at."""

    __slots__ = ("window", "events", "succeeded", "failed", "succeeded_by_name", "failed_by_name")

    def __init__(self, window: float = 10.0, max_names: int = 1000) -> None:
        self.window = window
        self.events = WindowCounter(window)
        self.succeeded = WindowCounter(window)
        self.failed = WindowCounter(window)
        self.succeeded_by_name = KeyedCounters(window, max_names)
        self.failed_by_name = KeyedCounters(window, max_names)

    def task_outcome(self, ok: bool, name: str | None, t: float) -> None:
        (self.succeeded if ok else self.failed).add(t)
        if name:
            (self.succeeded_by_name if ok else self.failed_by_name).add(name, t)

    def to_dict(self, now: float) -> dict[str, object]:
        return {
            "window_seconds": self.window,
            "events_per_second": self.events.rate(now),
            "succeeded_per_second": self.succeeded.rate(now),
            "failed_per_second": self.failed.rate(now),
            "succeeded_per_second_by_name": self.succeeded_by_name.rates(now),
            "failed_per_second_by_name": self.failed_by_name.rates(now),
        }
