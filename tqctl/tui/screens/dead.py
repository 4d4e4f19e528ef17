"""8 · Dead letters: messages the workers could not run, with the reason; requeue or delete."""

from __future__ import annotations

import json

from rich.text import Text
from textual.binding import Binding

from tqctl.tui import format as fmt
from tqctl.tui import verbs
from tqctl.tui.screens.base import TableScreen
from tqctl.tui.screens.dialogs import TextScreen
from tqctl.tui.widgets.table import Col

COLUMNS = [
    Col("when", "AGE", 4, 1),
    Col("reason", "REASON", 16, 1),
    Col("queue", "QUEUE", 8, 2),
    Col("task", "TASK", 18, 2, keep_end=True),
    Col("id", "ID", 8, 3),
    Col("detail", "DETAIL", 24, 1, grow=True),
    Col("worker", "WORKER", 14, 5),
]


class DeadLettersScreen(TableScreen):
    NAV = "dead"
    TITLE = "Dead letters"
    COLUMNS = COLUMNS
    MARKS = True
    WRITE_ACTIONS = frozenset({"requeue", "delete"})
    BINDINGS = [
        Binding("enter", "show", "show"),
        Binding("r", "requeue", "requeue"),
        Binding("ctrl+d", "delete", "delete"),
        Binding("space", "mark", "mark", show=False),
        Binding("U", "unmark", "unmark all", show=False),
    ]

    def rows(self) -> list[tuple[str, list]]:
        now = self.model.now()
        self._letters = {d["id"]: d for d in self.model.dead_letters}
        return [
            (
                d["id"],
                [
                    fmt.since(now, d.get("time")),
                    Text(f"✗ {d.get('reason')}", style="red"),
                    d.get("queue") or "-",
                    d.get("task_name") or "?",
                    fmt.short_id(d.get("task_id")),
                    fmt.clip(d.get("detail"), 200),
                    d.get("worker") or "-",
                ],
            )
            for d in self.model.dead_letters
        ]

    def status_line(self, shown: int) -> Text:
        total = self.model.dead_count
        return Text.assemble(
            ("Dead letters ", "bold"),
            f"{total}"
            + (f" (newest {shown} shown)" if total > shown else "")
            + " · never run, kept with the raw message · enter shows it",
        )

    def _describe(self, ids: list[str]) -> str:
        reasons: dict[str, int] = {}
        for i in ids:
            reason = (self._letters.get(i) or {}).get("reason") or "?"
            reasons[reason] = reasons.get(reason, 0) + 1
        return ", ".join(f"{n} × {r}" for r, n in reasons.items())

    def action_mark(self) -> None:
        self.table.toggle_mark()

    def action_unmark(self) -> None:
        self.table.clear_marks()

    def action_show(self) -> None:
        key = self.table.current_key
        letter = self._letters.get(key or "")
        if letter:
            self.app.push_screen(TextScreen(f"dead letter {key}", json.dumps(letter, indent=2, default=str)))

    def _act(self, requeue: bool) -> None:
        ids = self.table.targets()
        if not ids:
            self.notify("nothing selected", severity="warning", timeout=2)
            return
        self.tq.request_action(verbs.dead_letters(ids, requeue, self._describe(ids), self.tq.source.cli_broker))

    def action_requeue(self) -> None:
        self._act(True)

    def action_delete(self) -> None:
        self._act(False)

    def current_command(self) -> str | None:
        key = self.table.current_key
        return verbs.cli("dead", "show", key, broker=self.tq.source.cli_broker) if key else None
