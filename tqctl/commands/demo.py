"""``tqctl demo``: the example app end to end on the bundled broker, results printed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from engine.bundled import StateFolderError, make_state_folder
from engine.exceptions import BrokerUnavailable, ImproperlyConfigured
from engine.exceptions import TimeoutError as NotReady
from tqctl.client import resolve_broker_url, resolve_state_dir
from tqctl.commands.values import url_option
from tqctl.output import emit_line, fail, note

if TYPE_CHECKING:
    from engine.result import AsyncResult


def demo(
    orders: int = typer.Option(6, "--orders", min=1, help="how many orders to process"),
    broker: str = typer.Option("", "--broker", envvar="TQCTL_BROKER", callback=url_option, help="broker URL"),
) -> None:
    """Start a worker for the example shop app, send it work, print what comes back."""
    try:
        url = resolve_broker_url(broker or None)
    except (BrokerUnavailable, ImproperlyConfigured) as exc:
        fail(str(exc))
    from tqctl.examples import shop

    shop.app.conf.broker_url = url
    try:
        state = make_state_folder(resolve_state_dir(), mode=0o777)
    except StateFolderError as exc:
        fail(str(exc))
    log = state / "demo-worker.log"
    env = {**os.environ, "TQCTL_BROKER": url}
    # The worker's own log goes to a file: its ERROR line for the refund that is meant to fail
    # would otherwise land in the middle of the results.
    with open(log, "ab") as out:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tqctl",
                "worker",
                "-A",
                "tqctl.examples.shop",
                "-c",
                "2",
                "-l",
                "warning",
                "-n",
                "demo@%h",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _run(shop, orders, worker, log)
    except BrokerUnavailable as exc:  # its own words already say what and where: no class name before them
        fail(str(exc))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    note(f"worker log: {log}")


def _run(shop, orders: int, worker: subprocess.Popen[bytes], log: Path) -> None:  # noqa: ANN001 - the example
    started = time.monotonic()
    note(f"sending {orders} orders, a sum and a refund that fails...")
    results = [shop.process_order.delay(i) for i in range(1, orders + 1)]
    total = shop.add.delay(2, 3)
    refund = shop.refund.delay(42)
    for result in results:
        emit_line(f"process_order -> {_wait(result, worker, log)}")
    emit_line(f"add(2, 3) -> {_wait(total, worker, log)}")
    failed = _wait(refund, worker, log)
    if isinstance(failed, RuntimeError):
        emit_line(f"refund(42) -> failed as expected: {type(failed).__name__}: {failed}")
    else:
        emit_line(f"refund(42) -> {failed!r}, but it was meant to fail")
    emit_line(f"done in {time.monotonic() - started:.2f}s")


def _wait(result: AsyncResult, worker: subprocess.Popen[bytes], log: Path) -> Any:
    """The task's value, or its exception; a worker that died is reported rather than waited on."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return result.get(timeout=0.5, propagate=False)
        except NotReady:
            if worker.poll() is not None:
                fail(f"the demo worker exited with code {worker.returncode}: {_last_line(log)}")
            if time.monotonic() > deadline:
                fail(f"no result after 30s; the worker's log: {log}")


def _last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines()
    return lines[-1].removeprefix("tqctl: error: ") if lines else "(its log is empty)"
