"""``tqctl up`` with no terminal: ``--detach`` starts the workers and beat, prints their pids and
returns without drawing the console; plain ``up`` refuses in one line before starting anything.
(The console side of ``tqctl up``, in a real terminal, is tests/tui/test_up.py.)"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine import bundled
from tests.integration.harness import ROOT

pytestmark = pytest.mark.integration


def up(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQCTL_STATE_DIR": str(state)}
    env.pop("TQCTL_BROKER", None)
    return subprocess.run(
        [sys.executable, "-m", "tqctl", "up", "-A", "tqctl.examples.shop", "-c", "1", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,  # a hang guard: before, --detach opened the console and never returned
    )


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_detach_starts_them_prints_their_pids_and_returns(redis_url: str, redis_client: object, tmp_path: Path) -> None:
    proc = up(tmp_path / "state", "--beat", "--broker", redis_url, "--detach")
    pids = [int(p) for p in re.findall(r"^started \S+(?: \S+)?: pid (\d+),", proc.stdout, re.M)]
    try:
        assert proc.returncode == 0, proc.stderr
        assert "\x1b[" not in proc.stdout + proc.stderr, "the console was drawn"
        assert len(pids) == 2 and "started worker up1: pid" in proc.stdout and "started beat: pid" in proc.stdout
        assert f"stop them with: kill {pids[0]} {pids[1]}" in proc.stdout
        assert "tqctl worker -A tqctl.examples.shop" in cmdline(pids[0])  # left running
        assert "tqctl beat -A tqctl.examples.shop" in cmdline(pids[1])
    finally:
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGKILL)  # each runs in a session of its own
            except ProcessLookupError:
                pass


def test_up_without_a_terminal_is_a_usage_error_and_starts_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = up(state)  # no --broker: it would have started the bundled broker in STATE
    try:
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == "" and "\x1b[" not in proc.stderr
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("tqctl: error: ")
        assert "not a terminal" in proc.stderr and "--detach" in proc.stderr
        assert not bundled.status(state).running and not (state / "logs").exists()
    finally:
        bundled.stop(state)
