"""``tqctl metrics``: a standalone Prometheus exporter for a tqctl or Celery fleet."""

from __future__ import annotations

import signal
import threading
from typing import Any

import typer

from engine.config import mask_url
from engine.exceptions import BrokerUnavailable, ImproperlyConfigured
from tqctl.commands.values import url_option
from tqctl.metrics import MISSING
from tqctl.output import EXIT_ERROR, EXIT_USAGE, fail, note


def metrics(
    port: int = typer.Option(9808, "--port", "-p", min=0, max=65535, help="HTTP port (0: any free port)"),
    address: str = typer.Option("0.0.0.0", "--address", help="address to listen on"),
    interval: float = typer.Option(5.0, "--interval", min=0.2, help="seconds between broker polls"),
    inspect_timeout: float = typer.Option(1.0, "--inspect-timeout", min=0.1, help="seconds to wait for workers"),
    broker: str = typer.Option("", "--broker", envvar="TQCTL_BROKER", callback=url_option, help="broker URL"),
) -> None:
    """Serve Prometheus metrics for the whole cluster on http://ADDRESS:PORT/metrics."""
    try:
        from prometheus_client import start_http_server

        from tqctl.metrics.exporter import Exporter
    except ImportError:
        fail(MISSING, EXIT_USAGE)
    from tqctl.client import resolve_broker_url

    try:
        url = resolve_broker_url(broker or None)
        exporter = Exporter(url, interval=interval, inspect_timeout=inspect_timeout)
    except (BrokerUnavailable, ImproperlyConfigured) as exc:
        fail(str(exc))
    try:
        server, thread = start_http_server(port, address, registry=exporter.registry)
    except OSError as exc:
        exporter.stop()
        fail(f"cannot listen on {address}:{port}: {exc.strerror or exc}", EXIT_ERROR)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    exporter.start()
    note(f"tqctl metrics: serving http://{address}:{server.server_port}/metrics for {mask_url(url)}")
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        exporter.stop()
