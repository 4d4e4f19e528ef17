"""``tqctl demo``: the example app end to end on the bundled broker, results printed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import typer

from engine.exceptions import BrokerUnavailable, ImproperlyConfigured
from tqctl.client import resolve_broker_url
from tqctl.output import emit_line, fail, note


def demo(
    orders: int = typer.Option(6, "--orders", help="how many orders to process"),
    broker: str = typer.Option("", "--broker", envvar="TQCTL_BROKER", help="broker URL"),
) -> None:
    """Start a worker for the example shop app, send it work, print what comes back."""
    try:
        url = resolve_broker_url(broker or None)
    except (BrokerUnavailable, ImproperlyConfigured) as exc:
        fail(str(exc))
    from tqctl.examples import shop

    shop.app.conf.broker_url = url
    env = {**os.environ, "TQCTL_BROKER": url}
    worker = subprocess.Popen(
        [sys.executable, "-m", "tqctl", "worker", "-A", "tqctl.examples.shop", "-c", "2",
         "-l", "warning", "-n", "demo@%h"],
        env=env,
    )
    try:
        _run(shop, orders)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)


def _run(shop, orders: int) -> None:  # noqa: ANN001 - the example module
    started = time.monotonic()
    note(f"sending {orders} orders, a sum and a refund that fails...")
    results = [shop.process_order.delay(i) for i in range(1, orders + 1)]
    total = shop.add.delay(2, 3)
    refund = shop.refund.delay(42)
    for result in results:
        emit_line(f"process_order -> {result.get(timeout=30)}")
    emit_line(f"add(2, 3) -> {total.get(timeout=30)}")
    try:
        refund.get(timeout=30)
    except RuntimeError as exc:
        emit_line(f"refund(42) -> failed as expected: {type(exc).__name__}: {exc}")
    emit_line(f"done in {time.monotonic() - started:.2f}s")
