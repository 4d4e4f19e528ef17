"""8 · Audit: every action sent from a console on this machine (``audit.jsonl`` in the state folder)."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.binding import Binding

from tqctl.tui import format as fmt
from tqctl.tui.messages import Loaded
from tqctl.tui.screens.base import TableScreen
from tqctl.tui.screens.dialogs import TextScreen
from tqctl.tui.widgets.table import Col

COLUMNS = [
    Col("time", "TIME (UTC)", 19, 1),
    Col("ok", "OK", 3, 1),
    Col("user", "USER", 8, 3),
    Col("action", "ACTION", 15, 1),
    Col("target", "TARGET", 16, 2),
    Col("summary", "RESULT", 24, 1, grow=True),
]


class AuditScreen(TableScreen):
    NAV = "audit"
    TITLE = "Audit log"
    COLUMNS = COLUMNS
    BINDINGS = [Binding("enter", "show", "show"), Binding("c", "copy_command", "copy command", show=False)]

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[dict[str, Any]] = []
        self._loaded_for: object = "never"

    def refresh_view(self, force: bool = False) -> None:
        # Another console on this machine (or this one) appends to the same file: a changed size or
        # time reloads it. Only this console's own actions did, so the others' never showed.
        stamp = (self.tq.last_outcome, self._file_stamp())
        if self._loaded_for != stamp:
            self._loaded_for = stamp
            self.reload()
        super().refresh_view(force)

    def _file_stamp(self) -> tuple[int, int] | None:
        path = self.tq.audit.path
        try:
            info = path.stat() if path is not None else None
        except OSError:
            return None
        return None if info is None else (info.st_size, info.st_mtime_ns)

    def reload(self) -> None:
        audit = self.tq.audit

        def load() -> None:
            try:
                self.post_message(Loaded("audit", audit.read(2000)))
            except OSError as exc:
                self.post_message(Loaded("audit", [], str(exc)))

        self.run_worker(load, thread=True, exclusive=True, group="audit")

    def on_loaded(self, message: Loaded) -> None:
        if message.key == "audit":
            self.entries = message.data
            self.error = message.error
            self.refresh_view(True)  # from a thread: may land while the app quits

    def rows(self) -> list[tuple[str, list]]:
        out = []
        for i, e in enumerate(self.entries):
            ok = Text("✓", style="green") if e.get("ok") else Text("✗", style="bold red")
            out.append(
                (
                    str(i),
                    [
                        str(e.get("time", "?")).replace("T", " ")[:19],
                        ok,
                        e.get("user") or "?",
                        e.get("action") or "?",
                        fmt.clip(e.get("target"), 60),
                        fmt.clip(e.get("summary"), 200),
                    ],
                )
            )
        return out

    def status_line(self, shown: int) -> Text:
        where = str(self.tq.audit.path) if self.tq.audit.path else "memory (demo)"
        if getattr(self, "error", None):
            return Text(f"Audit log {where}: {self.error}", style="red")
        return Text.assemble(("Audit ", "bold"), f"{shown} actions · newest first · {where}")

    def _entry(self) -> dict[str, Any] | None:
        key = self.table.current_key
        return self.entries[int(key)] if key is not None and int(key) < len(self.entries) else None

    def action_show(self) -> None:
        if entry := self._entry():
            self.app.push_screen(TextScreen(f"audit · {entry.get('action')}", json.dumps(entry, indent=2, default=str)))

    def current_command(self) -> str | None:
        entry = self._entry()
        return entry.get("command") if entry else None
