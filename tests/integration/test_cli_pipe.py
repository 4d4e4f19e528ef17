"""A command whose stdout reader has gone (``tqctl queues | head -1``, ``| true``) ends as coreutils
do when SIGPIPE'd: nothing on stderr, exit 141. Typer and Rich turned the BrokenPipeError into a
silent exit 1, the status of a real failure, so ``set -o pipefail`` scripts failed; only ``tail``
had its own handling.

The reader is closed before the command starts, so every write finds it gone: no race with a
``true`` that may or may not have exited yet. Real server, real worker, real CLI processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import ROOT

pytestmark = pytest.mark.integration

# What runs without a task id; the worker's replies make status/inspect/workers print a row each.
COMMANDS = [
    ["-V"],
    ["--help"],
    ["queues", "--help"],
    ["queues"],
    ["queues", "--json"],
    ["workers"],
    ["workers", "--json"],
    ["status"],
    ["inspect", "active"],
    ["control", "ping"],
    ["tasks"],
    ["tasks", "--json"],
    ["failures"],
    ["dead", "ls", "--json"],
    ["call", "tests.apps.shop.add", "--args", "[1, 2]"],
    ["tail", "--for", "30"],  # ends at its first line, which the task sent below gives it
]


def run_with_reader_gone(args: list[str], broker_url: str, state: Path, env: dict[str, str]) -> Any:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "TQCTL_BROKER": broker_url, "TQCTL_STATE_DIR": str(state)}
        return subprocess.Popen(
            [sys.executable, "-m", "tqctl", *args],
            cwd=ROOT,
            env={**full_env, **env},
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(write_end)


def test_every_command_leaves_quietly_when_its_reader_has_gone(
    broker_url: str,
    transport_env: dict[str, str],
    start_worker: Callable[..., Any],
    shop: Any,
    tmp_path: Path,
) -> None:
    start_worker("-c", "1")
    shop.add.delay(1, 2).get(timeout=30)  # a recorded run for `tasks`
    for args in COMMANDS:
        proc = run_with_reader_gone(args, broker_url, tmp_path, transport_env)
        while proc.poll() is None:  # tail needs an event to write
            shop.add.delay(1, 2)
            try:
                proc.wait(0.5)
            except subprocess.TimeoutExpired:
                pass
        err = proc.stderr.read()
        proc.stderr.close()
        lines = [line for line in err.splitlines() if not line.startswith(("tqctl: following", "tqctl: warning"))]
        assert (proc.returncode, lines) == (141, []), f"tqctl {' '.join(args)}: {proc.returncode} {err!r}"


def test_an_error_with_the_reader_gone_keeps_its_status_and_line(broker_url: str, tmp_path: Path) -> None:
    """Only the reader leaving becomes 141: a command that failed says so as before."""
    proc = run_with_reader_gone(["task", "no-such-task"], broker_url, tmp_path, {})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and err.startswith("tqctl: error: no record of task no-such-task"), err
