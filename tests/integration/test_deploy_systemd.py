"""deploy/systemd/tqctl-health.service run as systemd runs a oneshot unit, against a real worker
with ``--health-file``: its ExecStart, then its ExecStopPost with the ``EXIT_STATUS`` and
``SERVICE_RESULT`` systemd sets. ``systemctl`` is a stand-in that answers ``is-active`` with the
state a scenario gives and records ``restart``; the paths in the unit point at this checkout's
``tqctl`` and the test's health file. The timer fires it every 30 s, so a wrong restart repeats:
a worker stopped on purpose must stay stopped, and only a stale file (a wedged worker) restarts it.
"""

from __future__ import annotations

import configparser
import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, WorkerProcess, wait_for

UNIT = ROOT / "deploy" / "systemd" / "tqctl-health.service"
UNIT_TQCTL, UNIT_FILE = "/srv/myproject/.venv/bin/tqctl", "/run/tqctl/worker.health"

FAKE_SYSTEMCTL = """#!/bin/sh
case "$1" in
  is-active) test "$(cat "$FAKE_SYSTEMD/state")" = active ;;
  restart) echo "$*" >> "$FAKE_SYSTEMD/calls" ;;
  *) echo "unexpected: $*" >> "$FAKE_SYSTEMD/calls"; exit 1 ;;
esac
"""


class HealthUnit:
    """The unit's commands, with ``state`` as what ``systemctl is-active`` of the worker says."""

    def __init__(self, tmp_path: Path, health_file: Path, broker_url: str) -> None:
        self.dir = tmp_path / "systemd"
        (self.dir / "bin").mkdir(parents=True)
        systemctl = self.dir / "bin" / "systemctl"
        systemctl.write_text(FAKE_SYSTEMCTL)
        systemctl.chmod(systemctl.stat().st_mode | stat.S_IXUSR)
        self.health_file = health_file
        path = os.pathsep.join([str(self.dir / "bin"), os.environ.get("PATH", "")])
        self.env = {**os.environ, "PATH": path, "FAKE_SYSTEMD": str(self.dir), "TQCTL_BROKER": broker_url}
        self.env["PYTHONPATH"] = str(ROOT)

    def command(self, key: str) -> list[str]:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string(UNIT.read_text())
        tqctl = str(Path(sys.executable).parent / "tqctl")  # the venv's, where the unit has its own
        line = parser.get("Service", key).replace(UNIT_TQCTL, tqctl).replace(UNIT_FILE, str(self.health_file))
        return shlex.split(line)

    def run(self, state: str) -> tuple[int, list[str]]:
        """One firing of the timer: ExecStart's exit code, and the ``systemctl`` calls it led to."""
        (self.dir / "state").write_text(state)
        (self.dir / "calls").write_text("")
        start = subprocess.run(self.command("ExecStart"), env=self.env, capture_output=True, text=True, timeout=60)
        post_env = {**self.env, "EXIT_CODE": "exited", "EXIT_STATUS": str(start.returncode)}
        post_env["SERVICE_RESULT"] = "success" if start.returncode == 0 else "exit-code"
        subprocess.run(self.command("ExecStopPost"), env=post_env, check=True, timeout=60)
        return start.returncode, (self.dir / "calls").read_text().splitlines()


@pytest.fixture
def unit(tmp_path: Path, broker_url: str) -> HealthUnit:
    return HealthUnit(tmp_path, tmp_path / "worker.health", broker_url)


def test_a_healthy_worker_is_left_alone_and_a_wedged_one_restarted(
    unit: HealthUnit, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker("-P", "threads", "-c", "1", "--health-file", str(unit.health_file))
    wait_for(unit.health_file.exists, 10, "the health file")
    assert unit.run("active") == (0, [])

    worker.signal(signal.SIGSTOP)  # wedged: the file is no longer refreshed ...
    try:
        long_ago = time.time() - 120  # ... and is now older than the unit's --max-age 30
        os.utime(unit.health_file, (long_ago, long_ago))
        assert unit.run("active") == (3, ["restart tqctl-worker.service"])
        assert unit.run("deactivating") == (0, [])  # already being stopped: systemd's job, not ours
    finally:
        worker.signal(signal.SIGCONT)


def test_a_worker_stopped_on_purpose_or_without_a_file_is_not_restarted(
    unit: HealthUnit, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker("-P", "threads", "-c", "1", "--health-file", str(unit.health_file))
    wait_for(unit.health_file.exists, 10, "the health file")
    worker.signal(signal.SIGTERM)  # `systemctl stop tqctl-worker`
    assert worker.wait(30) == 0 and not unit.health_file.exists()
    assert unit.run("inactive") == (0, [])
    assert unit.run("failed") == (0, [])
    # Active but no file (just started, or run without --health-file): the check fails, visibly,
    # and the worker is not restarted every 30 s for it.
    assert unit.run("active") == (4, [])
