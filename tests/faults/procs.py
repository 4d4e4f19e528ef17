"""What the process-level experiments ask of the OS about a worker and what it started: command
lines (no secret in ``ps``), children (the whole tree), liveness (no orphan left running), and
killing a process group whose leader may already be gone."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def alive(pid: int) -> bool:
    """Running and not a zombie (a reaped-later child of a dead parent is adopted and reaped by init)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def kill_group(pid: int) -> None:
    """SIGKILL the group ``pid`` led, even when its leader is already gone (children it left behind)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
