"""``tqctl worker --metrics-port N``: this worker's own task metrics, served from its process.

Same task metrics as the exporter (``TaskMetrics``, fed through ``tqctl.observe.EventTee``), plus
gauges read from the worker at scrape time. Queue gauges stay with ``tqctl metrics``: one reader of
the broker per cluster, not one per worker.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.events.state import ClusterState
from engine.exceptions import ImproperlyConfigured
from tqctl.metrics.tasks import TaskMetrics


class _WorkerGauges(Collector):
    def __init__(self, worker: Any) -> None:
        self.worker = worker

    def collect(self) -> Iterator[GaugeMetricFamily]:
        w, host = self.worker, [self.worker.hostname]
        busy = GaugeMetricFamily("tqctl_worker_busy", "Tasks running on the worker now", labels=["worker"])
        busy.add_metric(host, float(len(w.active)))
        reserved = GaugeMetricFamily(
            "tqctl_worker_reserved", "Tasks fetched and waiting for a free slot", labels=["worker"]
        )
        reserved.add_metric(host, float(len(w.reserved)))
        size = GaugeMetricFamily("tqctl_worker_concurrency", "Pool slots (processes or threads)", labels=["worker"])
        size.add_metric(host, float(w.pool.size()))
        yield from (busy, reserved, size)


class WorkerMetrics:
    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.registry = CollectorRegistry()
        self.tasks = TaskMetrics(self.registry, ClusterState(max_tasks=10_000))
        self.registry.register(_WorkerGauges(worker))
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def serve(self, port: int, address: str) -> int:
        """Listen, or stop the worker's start with one line naming the address (the bare OSError
        says only "Address already in use", not which of the worker's options caused it)."""
        try:
            self._server, self._thread = start_http_server(port, address, registry=self.registry)
        except OSError as exc:
            raise ImproperlyConfigured(
                f"--metrics-port: cannot listen on {address}:{port}: {exc.strerror or exc}"
            ) from None
        return int(self._server.server_port)

    def on_event(self, event: dict[str, Any]) -> None:
        self.tasks.apply(event, event.get("local_received"))

    def on_received(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        """``task_received`` (main process): the message's own publish time, for the wait histogram."""
        sent_at = getattr(request, "sent_at", None) if request is not None else None
        task_id = getattr(request, "id", None) if request is not None else None
        if isinstance(sent_at, (int, float)) and isinstance(task_id, str):
            self.tasks.note_sent(task_id, float(sent_at))

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
