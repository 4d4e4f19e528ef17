"""Prometheus metrics: the standalone exporter (``tqctl metrics``) and the worker's own endpoint
(``tqctl worker --metrics-port``). Both count tasks from the event stream with ``TaskMetrics``, so
the two never disagree on what a counter means.

prometheus_client is an optional dependency (the ``metrics`` extra): import this package lazily
and turn an ImportError into ``MISSING``'s one line.
"""

from __future__ import annotations

from engine.extras import install_hint

MISSING = f"metrics need prometheus_client: {install_hint('metrics')}"
