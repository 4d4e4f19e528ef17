"""``tqctl worker --health-file`` and ``tqctl health`` with real worker processes and real signals.

Fresh while the worker runs, even with every slot busy on a task longer than the stall window
(busy is not wedged); stale, and ``tqctl health`` non-zero, when the process is stopped (SIGSTOP)
or its consumer is stuck while a slot is free and a message waits; fresh again after SIGCONT.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.harness import ROOT, WorkerProcess, wait_for
from tqctl.health import STALE, STALL


def health(*args: str, broker: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if broker:
        env["TQCTL_BROKER"] = broker
    return subprocess.run(
        [sys.executable, "-m", "tqctl", "health", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=30
    )


def exits(code: int, *args: str) -> Callable[[], bool]:
    return lambda: health(*args).returncode == code


def test_fresh_while_busy_stale_while_stopped(
    shop, start_worker: Callable[..., WorkerProcess], tmp_path: Path, ledger: Path, broker_url: str
) -> None:
    path = tmp_path / "health"
    w1 = start_worker("-P", "threads", "-c", "1", "--health-file", str(path), name="w1")
    wait_for(path.exists, 10, "the health file")
    # worker-online (before the consumer starts) came first: no error line for a worker starting up
    assert "not refreshed" not in (tmp_path / "w1.log").read_text()
    data = json.loads(path.read_text())
    assert data["hostname"].startswith("w1@") and data["pid"] == w1.pid
    ok = health("--file", str(path), "--max-age", "5", "-d", data["hostname"], "--json", broker=broker_url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["healthy"] is True

    # Every slot busy for longer than the stall window, with a message waiting: busy, not wedged.
    shop.slow_late.delay(STALL + 4, "busy")
    shop.add.delay(1, 2)
    wait_for(lambda: "start busy" in ledger.read_text(), 10, "the long task to start")
    started = time.time()
    wait_for(lambda: path.stat().st_mtime > started + STALL + 1, 15, "a refresh past the stall window")
    assert "end busy" not in ledger.read_text(), "the long task ended before the check: not busy"
    assert health("--file", str(path), "--max-age", "5").returncode == 0

    w1.signal(signal.SIGSTOP)
    try:
        wait_for(exits(STALE, "--file", str(path), "--max-age", "2"), 15, "tqctl health to report the file stale")
    finally:
        w1.signal(signal.SIGCONT)
    wait_for(exits(0, "--file", str(path), "--max-age", "2"), 15, "the file to be fresh again after SIGCONT")


def test_stuck_consumer_lets_the_file_go_stale(
    broker_url: str, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    from tests.apps import health_app

    health_app.app.conf.broker_url = broker_url
    path = tmp_path / "health"
    w1 = start_worker("-P", "threads", "-c", "2", "--health-file", str(path), name="w1", app="tests.apps.health_app")
    wait_for(path.exists, 10, "the health file")
    try:
        health_app.wedge.delay()
        wait_for(lambda: "health_app.wedge[" in w1.log(), 10, "the wedging task to be received")
        health_app.add.delay(1, 2)  # a slot is free, a message waits: the stuck consumer never takes it
        wait_for(
            exits(STALE, "--file", str(path), "--max-age", "3"), STALL + 15, "tqctl health to report the file stale"
        )
    finally:
        health_app.app.close()
    assert "a slot is free and messages wait" in w1.log()
    missing = health("--file", str(tmp_path / "nope"))
    assert missing.returncode == 4 and "does not exist" in missing.stdout
    bad = health("-d", "no-at-sign", broker=broker_url)
    assert bad.returncode == 2 and bad.stderr.startswith("tqctl: error: -d takes a node name")


def test_a_folder_given_as_the_health_file_is_never_healthy(tmp_path: Path) -> None:
    """``--file /var/run/tqctl`` (the folder, not the worker's file) answered from the folder's own
    time: "ok file: ... refreshed 0.4s ago", exit 0, whenever anything in it had just changed."""
    (tmp_path / "other").write_text("x")  # the folder's time is now
    done = health("--file", str(tmp_path), "--max-age", "60")
    assert done.returncode == 4, done.stdout
    assert done.stdout.strip() == f"FAIL file: {tmp_path} is not a file (give the worker's --health-file)"
