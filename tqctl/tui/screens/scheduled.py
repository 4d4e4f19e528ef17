"""7 · Scheduled: ETA tasks waiting in the broker and beat entries with their next run."""

from __future__ import annotations

import datetime as dt

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from tqctl.tui import format as fmt
from tqctl.tui import verbs
from tqctl.tui.screens.base import ConsoleScreen, row_matches, text_filter
from tqctl.tui.screens.tasks import describe_tasks
from tqctl.tui.views import eta_rows
from tqctl.tui.widgets.table import Col, ConsoleTable

ETA_COLUMNS = [
    Col("due", "DUE", 9, 1),
    Col("eta", "AT (UTC)", 8, 3),
    Col("name", "TASK", 22, 1, grow=True, keep_end=True),
    Col("id", "ID", 8, 2),
    Col("queue", "QUEUE", 8, 2),
    Col("args", "ARGS", 18, 4),
]
BEAT_COLUMNS = [
    Col("enabled", "ON", 5, 1),
    Col("name", "ENTRY", 16, 1, grow=True),
    Col("task", "TASK", 18, 2, keep_end=True),
    Col("schedule", "SCHEDULE", 16, 3),
    Col("next", "NEXT", 8, 1),
    Col("last", "LAST", 6, 4),
    Col("runs", "RUNS", 5, 5),
]


def _iso(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


class ScheduledScreen(ConsoleScreen):
    NAV = "scheduled"
    TITLE = "Scheduled"
    WRITE_ACTIONS = frozenset({"run_now", "enable", "disable", "revoke"})
    BINDINGS = [
        Binding("x", "run_now", "run now"),
        Binding("e", "enable", "enable"),
        Binding("d", "disable", "disable"),
        Binding("ctrl+d", "revoke", "revoke ETA task"),
        Binding("tab", "app.focus_next", "switch table", show=False),
    ]

    def compose_body(self) -> ComposeResult:
        yield Static(id="status", classes="status")
        yield ConsoleTable(ETA_COLUMNS, id="eta")
        yield Static(id="beat-title", classes="status")
        yield ConsoleTable(BEAT_COLUMNS, id="beat")

    def render_body(self, force: bool) -> None:
        model, now = self.model, self.model.now()
        _, needles = text_filter(self.filter_text)
        self._eta = eta_rows(model)
        # Read with the snapshot: an ETA that passed since then is "due" (being moved), not late.
        read_at = model.snapshot.taken_at if model.snapshot else None
        rows = [
            (
                r["id"],
                [
                    self._due(r, now, read_at),
                    fmt.clock(r.get("eta")),
                    r.get("name") or "?",
                    fmt.short_id(r["id"]),
                    r.get("queue") or "-",
                    fmt.clip(r.get("args"), 60),
                ],
            )
            for r in self._eta
        ]
        rows = [r for r in rows if row_matches([str(c) for c in r[1]], needles)]
        self.query_one("#eta", ConsoleTable).set_rows(rows)
        self.status(self._eta_line(len(rows)))
        beat = list(model.beat or [])
        brows = []
        for e in beat:
            on = Text("✓ on", style="green") if e.get("enabled") else Text("○ off", style="yellow")
            due = fmt.until_as_read(now, _iso(e.get("next_run")), model.beat_read_at)
            brows.append(
                (
                    e["name"],
                    [
                        on,
                        e["name"],
                        e.get("task") or "?",
                        e.get("schedule") or "?",
                        due if e.get("enabled") else "-",
                        fmt.since(now, _iso(e.get("last_run"))),
                        str(e.get("total_run_count", 0)),
                    ],
                )
            )
        brows = [r for r in brows if row_matches([str(c) for c in r[1]], needles)]
        self.query_one("#beat", ConsoleTable).set_rows(brows)
        leader = model.beat_leader
        title = Text.assemble(("Beat entries ", "bold"), f"{len(beat)}")
        title.append(
            f" · leader {leader['token']}" if leader else " · no beat is running (no leader)",
            style="" if leader else "yellow",
        )
        if model.beat_note:
            title.append(f" · {model.beat_note}", style="dim")
        self.query_one("#beat-title", Static).update(title)

    def _due(self, row: dict, now: float, read_at: float | None) -> str | Text:
        """When it runs, or that it will not: a revoked ETA task stays in the broker until due
        (the worker drops it then), and the row read "in 49m" as if the revoke had not happened.
        Revoked here, by a worker's report, or by anyone (the broker's revoke store, read each poll)."""
        task = self.model.state.task(row["id"])
        snap = self.model.snapshot
        stored = snap is not None and row["id"] in snap.delayed_revoked
        if stored or row["id"] in self.model.revoked_here or (task is not None and task.state == "REVOKED"):
            return fmt.state_text("REVOKED")
        return fmt.until_as_read(now, row.get("eta"), read_at)

    def _eta_line(self, shown: int) -> Text:
        """How many ETA tasks wait and where; on RabbitMQ, that its delay levels cannot be counted
        (it said "0 in the broker" while countdown tasks sat there)."""
        snap = self.model.snapshot
        held = sum(1 for r in self._eta if r.get("source") not in (None, "broker"))  # Celery's, or ours on AMQP
        if snap is None:  # before the first poll: no count yet, not "0 in the broker"
            return Text.assemble(("ETA tasks ", "bold"), "· reading the broker…")
        if not snap.delayed_readable:
            return Text.assemble(
                ("ETA tasks ", "bold"),
                f"{held} held by workers · RabbitMQ's delay levels cannot be counted · ctrl+d revoke"
                " · tab switches table",
            )
        in_broker = snap.delayed_count
        where = f"{in_broker} in the broker" + (f", {held} held by workers" if held else "")
        return Text.assemble(
            ("ETA tasks ", "bold"),
            f"{in_broker + held} ({where})"
            + (f" · {shown} shown" if in_broker + held > shown else "")
            + " · x run now · ctrl+d revoke · tab switches table",
        )

    def _which(self) -> tuple[str, str | None]:
        eta, beat = self.query_one("#eta", ConsoleTable), self.query_one("#beat", ConsoleTable)
        if beat.has_focus:
            return "beat", beat.current_key
        return "eta", eta.current_key

    def action_run_now(self) -> None:
        kind, key = self._which()
        if key is None:
            self.notify("nothing selected", severity="warning", timeout=2)
        elif kind == "beat":
            self.tq.request_action(verbs.beat_run_now(key, self.tq.source.app_spec, self.tq.source.cli_broker))
        else:
            row = next((r for r in self._eta if r["id"] == key), {})
            if row.get("source") not in (None, "broker"):
                self.notify(f"held in memory by {row['source']}: it cannot be moved, only revoked", severity="warning")
                return
            self.tq.request_action(verbs.run_eta_now(key, row.get("name"), self.tq.source.cli_broker))

    def _set_enabled(self, enabled: bool) -> None:
        kind, key = self._which()
        if kind != "beat" or key is None:
            self.notify("select a beat entry (tab to the lower table)", severity="warning", timeout=3)
            return
        self.tq.request_action(verbs.beat_enable(key, enabled, self.tq.source.app_spec, self.tq.source.cli_broker))

    def action_enable(self) -> None:
        self._set_enabled(True)

    def action_disable(self) -> None:
        self._set_enabled(False)

    def action_revoke(self) -> None:
        kind, key = self._which()
        if kind != "eta" or key is None:
            self.notify("select an ETA task (upper table)", severity="warning", timeout=3)
            return
        task = self.model.state.task(key)
        describe = describe_tasks([task]) if task else f"ETA task {key}"
        self.tq.request_action(verbs.revoke([key], describe, [], self.tq.source.cli_broker))

    def current_command(self) -> str | None:
        kind, key = self._which()
        if key is None:
            return None
        return (
            verbs.cli("beat", "ls", "-A", self.tq.source.app_spec or "APP")
            if kind == "beat"
            else verbs.cli("task", key, broker=self.tq.source.cli_broker)
        )
