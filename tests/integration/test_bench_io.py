"""``tqctl bench --io`` when its worker cannot start: a real CLI process and a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import ROOT

pytestmark = pytest.mark.integration


def test_bench_io_whose_worker_exits_at_start_says_why_at_once(broker_url: str, tmp_path: Path) -> None:
    """Before: with greenlet missing, the asyncio worker exited at start with "the asyncio pool
    needs greenlet: pip install 'tqctl[asyncio]'" in its own log, and bench waited 60 s, then said
    "gave up after 60s waiting for 1 results..." (exit 1). Now bench stops waiting as soon as the
    worker exits and prints one line with the worker's reason, exit 1, no traceback."""
    hidden = tmp_path / "no-greenlet"
    hidden.mkdir()
    (hidden / "greenlet.py").write_text("raise ImportError('greenlet is hidden by this test')\n")
    env = {**os.environ, "PYTHONPATH": f"{hidden}{os.pathsep}{ROOT}"}  # bench passes its environment on
    argv = ["bench", "--io", "--io-tasks", "1", "--io-concurrency", "1", "--io-enqueue", "100", "--broker", broker_url]
    done = subprocess.run(
        [sys.executable, "-m", "tqctl", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("tqctl: error:")]
    assert errors == [
        "tqctl: error: the worker exited with code 1: the asyncio pool needs greenlet: pip install greenlet uvloop"
        " (from tqctl's checkout: pip install -e '.[asyncio]')"
    ], done.stderr
    assert "Traceback" not in done.stderr
