"""What ``tqctl worker --metrics-port / --health-file`` attach to a running worker, from outside it.

The worker already reports every task transition and heartbeat to its ``EventDispatcher`` (in
its main process, whatever the pool: prefork children only run the task). ``EventTee`` wraps that
dispatcher and hands each event to local listeners first, then passes it on unchanged, so the
metrics and the health file see exactly what ``tqctl tail`` and Flower see, even with events off,
without a hook inside the worker. Listeners must be cheap and never raise into the worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from engine import signals
from engine.worker.observers import TaskEvents

log = logging.getLogger("tqctl.observe")
Listener = Callable[[dict[str, Any]], None]


class EventTee:
    """A drop-in for the worker's ``EventDispatcher``: ``task``/``send`` also go to the listeners."""

    def __init__(self, inner: Any, listeners: list[Listener]) -> None:
        self._inner = inner
        self._listeners = listeners
        self._lock = threading.Lock()  # events come from the consumer, pool and upkeep threads

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        """Writes reach the real dispatcher (``control enable-events`` sets ``enabled``)."""
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._inner, name, value)

    def _tell(self, event_type: str, fields: dict[str, Any]) -> None:
        event = {"type": event_type, "hostname": self._inner.hostname, "timestamp": time.time(), **fields}
        event["local_received"] = event["timestamp"]
        with self._lock:
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception as exc:  # a metrics bug must never cost a task or a heartbeat
                    log.debug("event listener %r failed: %r", listener, exc)

    def task(self, event_type: str, **fields: Any) -> None:
        self._tell(event_type, dict(fields))
        self._inner.task(event_type, **fields)

    def send(self, event_type: str, **fields: Any) -> None:
        self._tell(event_type, dict(fields))
        self._inner.send(event_type, **fields)


def attach(
    worker: Any, metrics_port: int | None, health_file: str | None, metrics_address: str = "0.0.0.0"
) -> Callable[[], None]:
    """Wire the endpoint and/or the health file to ``worker`` (before ``run``); returns ``close``."""
    listeners: list[Listener] = []
    closers: list[Callable[[], None]] = []
    if metrics_port is not None:
        from tqctl.metrics.worker import WorkerMetrics

        endpoint = WorkerMetrics(worker)
        listeners.append(endpoint.on_event)
        receiver = endpoint.on_received
        signals.task_received.connect(receiver, weak=False, dispatch_uid=("tqctl.metrics", id(worker)))
        port = endpoint.serve(metrics_port, metrics_address)
        log.info("metrics on http://%s:%d/metrics", metrics_address, port)
        uid = ("tqctl.metrics", id(worker))
        closers.append(endpoint.close)
        closers.append(lambda: None if signals.task_received.disconnect(dispatch_uid=uid) else None)
    if health_file:
        from tqctl.health import HealthFile

        health = HealthFile(health_file, worker)
        listeners.append(health.on_event)
        closers.append(health.close)
    if listeners:
        tee = EventTee(worker.events, listeners)
        worker.events = tee  # heartbeats and worker-* events
        for observer in worker.observers:  # task-* events go out through the TaskEvents observer
            if isinstance(observer, TaskEvents):
                observer.events = tee

    def close() -> None:
        for step in closers:
            try:
                step()
            except Exception as exc:  # closing is best effort: the worker has already stopped
                log.debug("closing %r: %r", step, exc)

    return close
