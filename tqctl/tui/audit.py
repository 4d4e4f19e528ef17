"""The operator audit log: one JSON object per line, appended, never rewritten.

Every action the console sends is recorded with who, when, what, on which target and what the
cluster answered, in ``<state folder>/audit.jsonl``. Appends are small single ``write`` calls on
a file opened in append mode, so concurrent consoles on one machine interleave whole lines.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any

FILENAME = "audit.jsonl"


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return os.environ.get("USER") or str(os.getuid())


class AuditLog:
    """``path`` None keeps entries in memory (demo mode, tests)."""

    def __init__(self, path: str | os.PathLike[str] | None, entries: list[dict[str, Any]] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._memory: list[dict[str, Any]] = list(entries or [])
        self._lock = threading.Lock()

    @classmethod
    def in_state_dir(cls, state_dir: str | os.PathLike[str]) -> AuditLog:
        return cls(Path(state_dir).expanduser() / FILENAME)

    def append(
        self,
        action: str,
        target: str,
        *,
        ok: bool,
        summary: str,
        replies: Any = None,
        broker: str | None = None,
        command: str | None = None,
        scope: str | None = None,
        when: float | None = None,
    ) -> dict[str, Any]:
        stamp = dt.datetime.fromtimestamp(when, dt.timezone.utc) if when else dt.datetime.now(dt.timezone.utc)
        entry = {
            "time": stamp.isoformat(timespec="seconds"),
            "user": current_user(),
            "action": action,
            "target": target,
            "ok": ok,
            "summary": summary,
            "scope": scope,
            "command": command,
            "broker": broker,
            "replies": replies,
        }
        line = json.dumps(entry, default=repr, ensure_ascii=False) + "\n"
        with self._lock:
            if self.path is None:
                self._memory.append(entry)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line)
        return entry

    def read(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Newest first; lines that do not parse are shown as such, not dropped."""
        with self._lock:
            if self.path is None:
                return list(reversed(self._memory[-limit:]))
            if not self.path.exists():
                return []
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                lines = deque(fh, maxlen=limit)
        out = []
        for line in reversed(lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"time": "?", "action": "unreadable line", "target": line.strip()[:80], "ok": False})
        return out
