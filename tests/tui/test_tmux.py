"""The real ``tqctl`` program in a real terminal (tmux, 80x24) on a real server and worker: what a
user sees, ctrl+z suspends to the shell, fg comes back, ctrl+c quits with status 0, and NO_COLOR
leaves no colour on the screen."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)"),
]


def test_tqctl_in_a_real_terminal(broker_url, start_worker, shop, terminal, tmp_path):
    start_worker("-c", "2", "-P", "threads")
    for i in range(3):
        shop.add.delay(i, i).get(timeout=10)
    failed = shop.fail.delay("card declined")
    with pytest.raises(Exception):  # noqa: B017 - any error: the task failed
        failed.get(timeout=10)
    editor = tmp_path / "edit.py"  # an "editor" that rewrites the arguments, run in the real terminal
    editor.write_text(
        "import json, sys\np = sys.argv[1]\nd = json.load(open(p))\nd['args'] = ['edited in tmux']\n"
        "json.dump(d, open(p, 'w'))\n"
    )
    env = (
        f"PYTHONPATH={shlex.quote(str(ROOT))} TQCTL_STATE_DIR={shlex.quote(str(tmp_path / 'state'))} NO_COLOR=1 "
        f"EDITOR={shlex.quote(f'{sys.executable} {editor}')}"
    )
    terminal.keys(
        f"cd {shlex.quote(str(ROOT))} && env {env} {sys.executable} -m tqctl --broker {shlex.quote(broker_url)}",
        "Enter",
    )

    first = terminal.wait(
        lambda s: "1/1 workers" in s and "● online" in s and " celery " in s, "the header, the queue and the worker"
    )
    lines = first.splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    assert lines[0].lstrip().startswith("tqctl") and lines[0].rstrip().endswith("RW")
    assert "1 Overview" in lines[1] and "8 Audit" in lines[1]

    terminal.keys("4")
    tasks = terminal.wait(lambda s: "✗ FAILURE" in s and "✓ SUCCESS" in s, "the task list")
    assert "shop.fail" in tasks and "shop.add" in tasks
    terminal.keys("s")  # state filter: failures
    terminal.wait(lambda s: "state ✗ FAILURE" in s and "✓ SUCCESS" not in s, "only the failure")
    terminal.keys("Enter")
    # The detail paints in steps (the console never waits on the broker): wait for the error itself,
    # not just the id, or a capture mid-repaint shows the id over an empty body.
    detail = terminal.wait(
        lambda s: failed.id in s and ("ValueError" in s or "card declined" in s), "the task detail with its error"
    )
    assert "shop.fail" in detail

    tinted = sorted({c for c in re.findall(r"\x1b\[[0-9;]*m", terminal.screen(escapes=True)) if _chromatic(c)})
    assert not tinted, f"NO_COLOR, yet colours on screen: {tinted[:5]}"

    console = [pid for pid in _pids(f"-m tqctl --broker {broker_url}")]
    assert len(console) == 1 and _listening(console[0]) == [], "the console opens no port"

    terminal.keys("R")  # retry with edited arguments: the console suspends for $EDITOR, then asks
    asked = terminal.wait(lambda s: "Retry tests.apps.shop.fail with edited arguments" in s, "the confirmation")
    assert '["edited in tmux"]' in asked
    terminal.keys("Escape")
    terminal.wait(lambda s: "with edited arguments" not in s and failed.id in s, "the detail again")

    terminal.keys("C-z")  # suspend to the shell, like any terminal program
    terminal.wait(lambda s: "Stopped" in s and s.rstrip().endswith("$"), "the shell after ctrl+z")
    terminal.keys("fg", "Enter")
    terminal.wait(lambda s: failed.id in s, "the console back after fg")
    terminal.keys("C-c")
    terminal.wait(lambda s: s.rstrip().endswith("$") and "Stopped" not in s.splitlines()[-1], "the shell prompt")
    terminal.keys("echo exit=$?", "Enter")
    terminal.wait(lambda s: "exit=0" in s, "exit status 0")


GREYS = {0, 7, 8, 15, 16, 231, *range(232, 256)}


def _chromatic(sequence: str) -> bool:
    """An SGR sequence that sets a colour other than a grey (black, white, the grey ramp, r == g == b)."""
    params = [int(p) if p else 0 for p in sequence[2:-1].split(";")]
    i = 0
    while i < len(params):
        p = params[i]
        if p in (38, 48) and i + 1 < len(params):
            if params[i + 1] == 5 and i + 2 < len(params):
                if params[i + 2] not in GREYS:
                    return True
                i += 3
                continue
            if params[i + 1] == 2 and i + 4 < len(params):
                if len(set(params[i + 2 : i + 5])) > 1:
                    return True
                i += 5
                continue
        if 31 <= p <= 36 or 41 <= p <= 46 or 91 <= p <= 96 or 101 <= p <= 106:
            return True
        i += 1
    return False


def _pids(needle: str) -> list[int]:
    """Processes whose command line contains ``needle`` (arguments joined by spaces)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if needle in cmdline:
                found.append(int(entry.name))
    return found


def _listening(pid: int) -> list[str]:
    """Sockets of ``pid`` in LISTEN state (TCP, TCP6, and unix stream sockets accepting connections)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:
                found.append(f"{table} {parts[1]}")
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[3] == "00010000" and parts[6] in inodes:  # __SO_ACCEPTCON: a listening unix socket
            found.append(f"unix {parts[-1] if len(parts) > 7 else '(anonymous)'}")
    return found
