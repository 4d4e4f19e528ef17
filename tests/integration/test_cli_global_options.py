"""Options written before the subcommand (``tqctl --broker URL queues``, ``tqctl -A mod worker``)
reach the subcommand, as the same options written after it do.

Each test runs the CLI as a real process in an empty folder with no ``TQCTL_BROKER`` and a state
folder that is a plain file, so a command that ignored the global ``--broker`` fails to start the
bundled broker (and starts nothing) rather than quietly answering from another server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.broker.redis import RedisBroker
from tests.integration.harness import ROOT

pytestmark = pytest.mark.integration


def run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("TQCTL_BROKER", "TQCTL_BACKEND")}
    blocker = cwd / "state-is-a-file"
    blocker.touch()
    base.update(PYTHONPATH=str(ROOT), TQCTL_STATE_DIR=str(blocker), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "tqctl", *args], cwd=cwd, env=base, capture_output=True, text=True, timeout=60
    )


def test_global_broker_is_used_by_queues_purge_and_dead(broker_url: str, tmp_path: Path) -> None:
    broker = RedisBroker(broker_url)
    try:
        for _ in range(2):
            broker.publish("global-q", b'{"body": ""}')
    finally:
        broker.close()

    queues = run(tmp_path, "--broker", broker_url, "queues", "-Q", "global-q", "--sample", "0", "--json")
    assert queues.returncode == 0, queues.stderr
    rows = {row["name"]: row for row in json.loads(queues.stdout)["queues"]}
    assert rows["global-q"]["depth"] == 2

    dry = run(tmp_path, "--broker", broker_url, "purge", "global-q", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["count"] == 2

    dead = run(tmp_path, "--broker", broker_url, "dead", "ls", "--json")
    assert dead.returncode == 0, dead.stderr
    assert json.loads(dead.stdout) == []


def test_global_broker_beats_the_environment(broker_url: str, tmp_path: Path) -> None:
    """An explicit flag wins over TQCTL_BROKER wherever it is written, as Celery's -b does."""
    proc = run(
        tmp_path,
        "--broker",
        broker_url,
        "purge",
        "nothing-here",
        "--dry-run",
        "--json",
        env={"TQCTL_BROKER": "redis://127.0.0.1:1/0"},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["count"] == 0


def test_global_app_reaches_worker(tmp_path: Path) -> None:
    """``tqctl -A mod worker`` loads mod (before: 'Missing option -A'); an unknown module is one line."""
    proc = run(tmp_path, "-A", "no_such_module_here", "worker", "--broker", "redis://127.0.0.1:1/0")
    assert proc.returncode != 0
    assert "no_such_module_here" in proc.stderr and "Missing option" not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_global_app_reaches_up(tmp_path: Path) -> None:
    """``tqctl -A mod up`` checks mod before starting anything (before: 'Missing option -A')."""
    proc = run(tmp_path, "-A", "no_such_module_here", "up", "--broker", "redis://127.0.0.1:1/0")
    assert proc.returncode != 0
    assert "no_such_module_here" in proc.stderr and "Missing option" not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_global_state_dir_reaches_every_subcommand(tmp_path: Path) -> None:
    """``tqctl --state-dir DIR queues`` starts the bundled broker in DIR and ``broker status``
    then finds it there (before: the flag was dropped, and TQCTL_STATE_DIR, a plain file in
    these tests, made both fail)."""
    state = tmp_path / "state"
    queues = run(tmp_path, "--state-dir", str(state), "queues", "--sample", "0", "--json")
    try:
        assert queues.returncode == 0, queues.stderr
        status = run(tmp_path, "--state-dir", str(state), "broker", "status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["state_dir"] == str(state.resolve())
    finally:
        stopped = run(tmp_path, "broker", "stop", "--state-dir", str(state))
    assert stopped.returncode == 0, stopped.stderr
