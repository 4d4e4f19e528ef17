"""``tqctl metrics``: one process that turns a cluster into Prometheus metrics.

Two feeds, both the console's own: the event stream (``EventReceiver`` into ``TaskMetrics``) for
task counts and latencies, and ``Probe.snapshot`` (queues, inspect replies, the failure inbox and
dead letters) polled every ``interval`` seconds for the gauges. A scrape only reads the latest
poll, so it is cheap and never waits on a worker's reply. Works on a Celery 5 fleet too: its
workers send the same events and answer the same inspect calls (tqctl's own stores read empty).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.broker.inspect import open_fanout
from engine.config import env_backend_url
from engine.events.receiver import EventReceiver
from tqctl.metrics.tasks import TaskMetrics
from tqctl.tui.probe import Probe
from tqctl.tui.snapshot import ClusterSnapshot

log = logging.getLogger("tqctl.metrics")


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class ClusterCollector(Collector):
    """The gauges, computed at scrape time from the latest snapshot and the event state."""

    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap, up = self.exporter.latest()
        broker_up = _gauge("tqctl_broker_up", "1 if the last poll of the broker succeeded")
        broker_up.add_metric([], 1.0 if up else 0.0)
        yield broker_up
        now = time.time()
        with self.exporter.state_lock:  # the events thread is folding into the same state
            alive = {w.hostname: w for w in self.exporter.tasks.state.workers_alive(now)}
        online = set(alive)
        busy = _gauge("tqctl_worker_busy", "Tasks running on the worker now", ["worker"])
        if snap is not None:
            online |= set(snap.replies)
            yield from self._queues(snap, now)
            yield from self._stores(snap)
        for host in sorted(online):
            reply = snap.replies.get(host) if snap is not None else None
            active = len(reply.active) if reply is not None and reply.active is not None else None
            if active is None and host in alive:
                active = alive[host].active
            busy.add_metric([host], float(active or 0))
        workers = _gauge("tqctl_workers_online", "Workers heartbeating or answering inspect")
        workers.add_metric([], float(len(online)))
        yield workers
        yield busy

    @staticmethod
    def _queues(snap: ClusterSnapshot, now: float) -> Iterator[GaugeMetricFamily]:
        depth = _gauge("tqctl_queue_depth", "Messages waiting in the queue (all priorities)", ["queue"])
        age = _gauge("tqctl_queue_oldest_age_seconds", "Age of the oldest waiting message (0 when empty)", ["queue"])
        consumers = _gauge("tqctl_queue_consumers", "Workers consuming from the queue", ["queue"])
        for q in snap.queues:
            depth.add_metric([q.name], float(q.depth))
            if q.depth == 0:
                age.add_metric([q.name], 0.0)
            elif q.oldest_sent_at is not None:  # Celery's messages carry no send time: no sample
                age.add_metric([q.name], max(now - q.oldest_sent_at, 0.0))
            count = sum(1 for r in snap.replies.values() if q.name in (r.queues or ()))
            consumers.add_metric([q.name], float(count))
        delayed = _gauge("tqctl_delayed_tasks", "ETA/countdown tasks parked in the broker's delayed set")
        delayed.add_metric([], float(snap.delayed_count))
        yield from (depth, age, consumers, delayed)

    @staticmethod
    def _stores(snap: ClusterSnapshot) -> Iterator[GaugeMetricFamily]:
        dead = _gauge("tqctl_dead_letters", "Messages in the dead-letter store")
        dead.add_metric([], float(snap.dead_count or 0))
        groups = snap.failure_groups or ()
        open_groups = _gauge("tqctl_failure_groups_open", "Failure groups with at least one stored failure")
        open_groups.add_metric([], float(sum(1 for g in groups if g.get("open"))))
        stored = _gauge("tqctl_failures_open", "Failed tasks kept in the failure inbox (retryable)")
        stored.add_metric([], float(sum(int(g.get("open") or 0) for g in groups)))
        yield from (dead, open_groups, stored)


class Exporter:
    """Owns the two feed threads and the registry; ``start`` then ``stop``."""

    def __init__(self, url: str, interval: float = 5.0, inspect_timeout: float = 1.0) -> None:
        self.url = url
        self.interval = interval
        self.registry = CollectorRegistry()
        self.tasks = TaskMetrics(self.registry)
        self.registry.register(ClusterCollector(self))
        backend = env_backend_url()  # (on AMQP: where history and failures are)
        self._probe = Probe(url, inspect_timeout=inspect_timeout, backend_url=backend)
        self._receiver = EventReceiver(url, open_fanout(url, backend))
        self._lock = threading.Lock()
        self.state_lock = threading.Lock()
        self._snapshot: ClusterSnapshot | None = None
        self._up = False
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._events_loop, name="metrics-events", daemon=True),
            threading.Thread(target=self._poll_loop, name="metrics-poll", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(5)
        self._receiver.close()
        self._probe.close()

    def latest(self) -> tuple[ClusterSnapshot | None, bool]:
        with self._lock:
            return self._snapshot, self._up

    def _events_loop(self) -> None:
        while not self._stop.is_set():
            try:
                events = self._receiver.poll(0.5)
            except Exception as exc:  # the broker went away: keep trying, the gauges say so
                log.warning("event stream: %s", exc)
                self._stop.wait(1.0)
                continue
            for event in events:
                self._apply(event)

    def _apply(self, event: dict[str, Any]) -> None:
        try:
            with self.state_lock:
                self.tasks.apply(event, event.get("local_received"))
        except Exception as exc:  # one odd event must not stop the feed
            log.debug("event not counted: %r", exc)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                snap, up = self._probe.snapshot(slow=True), True
            except Exception as exc:
                log.warning("broker poll failed: %s", exc)
                snap, up = None, False
            with self._lock:
                self._snapshot, self._up = (snap or self._snapshot), up
            self._stop.wait(self.interval)
