"""``tqctl demo``, the README's quick start, as a user runs it: a real process on a fresh state
folder (the bundled broker starts there), a real worker, results on stdout."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine import bundled

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_start_prints_every_result_and_keeps_the_worker_log_apart(tmp_path: Path) -> None:
    state = tmp_path / ".tqctl"
    env = {k: v for k, v in os.environ.items() if k != "TQCTL_BROKER"}
    env.update(TQCTL_STATE_DIR=str(state), PYTHONPATH=str(ROOT))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tqctl", "demo", "--orders", "4"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        bundled.stop(state)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert [line.split(" -> ")[0] for line in out[:4]] == ["process_order"] * 4
    assert all("'status': 'charged'" in line for line in out[:4])
    assert out[4:6] == [
        "add(2, 3) -> 5",
        "refund(42) -> failed as expected: RuntimeError: order 42: refunds need a manager's approval",
    ]
    assert out[6].startswith("done in ") and len(out) == 7
    # The worker's log is in the state folder, not in the middle of the results.
    assert "ERROR" not in proc.stderr and "Traceback" not in proc.stderr
    log = state / "demo-worker.log"
    assert f"worker log: {log}" in proc.stderr
    assert "refund" in log.read_text() and "ERROR" in log.read_text()


def test_an_unreachable_broker_is_one_line_in_its_own_words(tmp_path: Path) -> None:
    """Before: ``tqctl: error: BrokerUnavailable: cannot reach broker ...`` (the last-resort net's
    class name before a message that already says it all)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    env = {**os.environ, "TQCTL_BROKER": f"redis://:s3cret@127.0.0.1:{port}/0", "PYTHONPATH": str(ROOT)}
    env.update(TQCTL_STATE_DIR=str(tmp_path / ".tqctl"))
    proc = subprocess.run(
        [sys.executable, "-m", "tqctl", "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1 and proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("tqctl: error: ")]
    assert errors == [errors[-1]] and errors[0].startswith(f"tqctl: error: cannot reach broker at 127.0.0.1:{port}")
    assert "s3cret" not in proc.stderr and "Traceback" not in proc.stderr
