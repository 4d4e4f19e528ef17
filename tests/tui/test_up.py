"""``tqctl up`` in a real terminal: broker, two workers and beat from the README example start as
child processes, the console shows the shop's tasks flowing, a pool grows, and leaving asks whether
to stop them. (``--detach``, which opens no console, is tests/integration/test_up_scripted.py.)"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import bundled

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)"),
]


def workers_of(state: Path) -> list[int]:
    """pids of the ``tqctl worker``/``beat`` processes ``tqctl up`` started for this state folder."""
    out = subprocess.run(
        ["pgrep", "-f", "tqctl (worker|beat) -A tqctl.examples.shop"], capture_output=True, text=True
    ).stdout.split()
    mine = []
    for pid in map(int, out):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if f"TQCTL_STATE_DIR={state}".encode() in environ:
            mine.append(pid)
    return [pid for pid in mine if _parent(pid) not in mine]  # not the pool's child processes


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def stop_all(state: Path) -> None:
    for pid in workers_of(state):
        try:
            os.killpg(pid, signal.SIGKILL)  # tqctl up starts each in its own session
        except ProcessLookupError:
            pass
    bundled.stop(state)  # up leaves the bundled broker running on purpose; the test does not


def start_up(terminal, broker_url: str, state: Path, *extra: str) -> None:  # noqa: ANN001
    env = f"PYTHONPATH={shlex.quote(str(ROOT))} TQCTL_STATE_DIR={shlex.quote(str(state))}"
    terminal.keys(
        f"cd {shlex.quote(str(ROOT))} && env {env} {sys.executable} -m tqctl up -A tqctl.examples.shop "
        f"-c 2 --workers 2 --beat --broker {shlex.quote(broker_url)} {' '.join(extra)}",
        "Enter",
    )


def test_up_starts_the_example_shows_it_and_stops_it(broker_url, terminal, tmp_path):
    state = tmp_path / "state"
    start_up(terminal, broker_url, state)
    try:
        leave_the_console(terminal, state)
    finally:
        stop_all(state)


def leave_the_console(terminal, state: Path) -> None:  # noqa: ANN001
    terminal.wait(lambda s: "2/2 workers" in s and "● online" in s, "the two workers online", timeout=30)
    assert len(workers_of(state)) == 3  # two workers and beat

    terminal.keys("4")  # beat sends orders every 2 s: they flow into the tail
    terminal.wait(lambda s: s.count("✓ SUCCESS") >= 3 and "shop.process_order" in s, "orders flowing", timeout=30)

    terminal.keys("2")
    first = terminal.wait(lambda s: re.search(r"up1@\S+\s+● online\s+prefork\s+2 ", s), "up1 with 2 processes")
    assert "+ grow" in first.splitlines()[-1]
    terminal.keys("+")  # the cursor is on the first worker
    terminal.wait(lambda s: re.search(r"up1@\S+\s+● online\s+prefork\s+3 ", s), "up1 grown to 3", timeout=15)

    terminal.keys("C-c")
    leave = terminal.wait(lambda s: "Leave the console" in s, "the question on leaving")
    assert "tqctl up started 2 workers and beat" in leave.replace("\n", " ")
    terminal.keys("Enter")  # the focus is on "Stop them"
    done = terminal.wait(
        lambda s: "stopping 2 workers and beat" in s and s.rstrip().endswith("$"), "the shell", timeout=40
    )
    assert "finish)…\nstopped\n" in done  # said once they are gone (the broker here is the test's own)
    deadline = time.monotonic() + 10
    while workers_of(state) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers_of(state) == []


def test_a_hangup_stops_what_up_started(broker_url, terminal, tmp_path):
    """The SSH session or terminal goes away under ``tqctl up``: nobody can be asked, so its
    workers and beat get the warm stop instead of running on, orphaned, in sessions of their own."""
    state = tmp_path / "state"
    start_up(terminal, broker_url, state)
    try:
        terminal.wait(lambda s: "2/2 workers" in s and "● online" in s, "the two workers online", timeout=30)
        started = workers_of(state)
        assert len(started) == 3  # two workers and beat
        terminal.tmux("kill-server")  # the terminal hangs up: SIGHUP to the shell and to tqctl up
        deadline = time.monotonic() + 40
        while any(Path(f"/proc/{pid}").exists() for pid in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert workers_of(state) == [], "workers or beat left running after the hangup"
    finally:
        stop_all(state)
