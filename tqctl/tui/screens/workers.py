"""2 · Workers: pool, concurrency, load and liveness per worker; pool and consumer control."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from tqctl.tui import format as fmt
from tqctl.tui import verbs
from tqctl.tui.screens.base import TableScreen
from tqctl.tui.screens.dialogs import ChoiceScreen, PromptScreen
from tqctl.tui.screens.overview import STATUS
from tqctl.tui.views import WorkerRow, queue_rows, worker_rows
from tqctl.tui.widgets.table import Col

COLUMNS = [
    Col("host", "WORKER", 18, 1, grow=True),
    Col("status", "STATUS", 11, 1),
    Col("pool", "POOL", 7, 3),
    Col("conc", "CONC", 7, 2),
    Col("active", "ACT", 3, 1),
    Col("reserved", "RES", 3, 2),
    Col("done", "DONE", 7, 3),
    Col("failed", "FAIL", 5, 3),
    Col("load", "LOAD", 4, 4),
    Col("hb", "HB", 4, 2),
    Col("queues", "QUEUES", 14, 5),
]


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def worker_cells(w: WorkerRow) -> list[str | Text]:
    glyph, style = STATUS[w.status]
    if w.low is not None or w.high is not None:
        conc = f"{_n(w.current)}/{_n(w.low)}/{_n(w.high)}"
    else:
        conc = _n(w.current)
    return [
        w.hostname,
        Text(f"{glyph} {w.status}", style=style),
        w.pool or "-",
        conc,
        _n(w.active),
        _n(w.reserved),
        fmt.count(w.processed),
        str(w.failed),
        "-" if w.load is None else f"{w.load:.1f}",
        fmt.age(w.heartbeat_age),
        ",".join(w.queues) or "-",
    ]


class WorkersScreen(TableScreen):
    NAV = "workers"
    TITLE = "Workers"
    COLUMNS = COLUMNS
    MARKS = True
    WRITE_ACTIONS = frozenset(
        {"grow", "shrink", "autoscale", "add_consumer", "cancel_consumer", "drain", "shutdown", "enable_events"}
    )
    BINDINGS = [
        Binding("plus", "grow", "grow"),
        Binding("minus", "shrink", "shrink"),
        Binding("a", "autoscale", "autoscale"),
        Binding("o", "add_consumer", "consume"),
        Binding("O", "cancel_consumer", "stop consuming", show=False),
        Binding("D", "drain", "drain"),
        Binding("ctrl+d", "shutdown", "shutdown"),
        Binding("E", "enable_events", "events", show=False),
        Binding("space", "mark", "mark", show=False),
        Binding("U", "unmark", "unmark all", show=False),
    ]

    def compose_body(self) -> ComposeResult:
        yield from super().compose_body()
        yield Static(id="detail", classes="detail")

    def rows(self) -> list[tuple[str, list]]:
        self._rows = worker_rows(self.model)
        return [(w.hostname, worker_cells(w)) for w in self._rows]

    def render_body(self, force: bool) -> None:
        super().render_body(force)
        self.query_one("#detail", Static).update(self._detail())

    def status_line(self, shown: int) -> Text:
        online = sum(1 for w in self._rows if w.online)
        marked = len(self.table.marked)
        return Text.assemble(
            ("Workers ", "bold"),
            f"{online} online of {len(self._rows)}",
            (f" · {marked} marked (actions apply to them)" if marked else "", "bold"),
            " · CONC is current/min/max · space marks",
        )

    def _detail(self) -> Text:
        row = self._selected_rows()
        if not row:
            return Text("no worker selected", style="dim")
        w = row[0]
        text = Text.assemble(
            (w.hostname, "bold"),
            f" · pid {_n(w.pid)} · {w.software or 'unknown software'} · queues {', '.join(w.queues) or '-'}",
        )
        for task in [t for t in w.active_tasks if t.get("name")][:3]:
            started = task.get("time_start")
            ran = fmt.since(self.model.now(), started) if isinstance(started, (int, float)) else "-"
            text.append(f"\n  ▶ {task.get('name')}[{fmt.short_id(task.get('id'))}] {ran}")
        if not w.events and w.online:
            text.append("\n  ◐ sends heartbeats but no task events: E enables them", style="yellow")
        return text

    def _selected_rows(self) -> list[WorkerRow]:
        wanted = self.table.targets()
        return [w for w in getattr(self, "_rows", []) if w.hostname in wanted]

    def _targets(self) -> list[str] | None:
        rows = [w.hostname for w in self._selected_rows()]
        if not rows:
            self.notify("no worker selected", severity="warning", timeout=2)
            return None
        return rows

    def _orphaned(self, leaving: list[str]) -> list[str]:
        """Queues that no online worker would consume once ``leaving`` stop."""
        staying = [w for w in self._rows if w.online and w.hostname not in leaving]
        names = {q for w in self._rows if w.hostname in leaving for q in w.queues}
        return sorted(q for q in names if not any(q in w.queues for w in staying))

    # -- actions ----------------------------------------------------------------------------------
    def action_mark(self) -> None:
        self.table.toggle_mark()
        self.render_body(True)

    def action_unmark(self) -> None:
        self.table.clear_marks()
        self.render_body(True)

    def action_grow(self) -> None:
        if targets := self._targets():
            self.tq.request_action(verbs.pool_resize(targets, 1, True, self.tq.source.cli_broker))

    def action_shrink(self) -> None:
        if targets := self._targets():
            sizes = {w.hostname: w.current for w in self._selected_rows()}
            self.tq.request_action(verbs.pool_resize(targets, 1, False, self.tq.source.cli_broker, sizes))

    def action_autoscale(self) -> None:
        if not (targets := self._targets()):
            return
        w = self._selected_rows()[0]
        current = f"{w.high or w.current or 4},{w.low or 1}"

        def check(text: str) -> str | None:
            parts = text.replace(" ", "").split(",")
            if len(parts) != 2 or not all(p.isdigit() for p in parts):
                return "write MAX,MIN, e.g. 8,2"
            high, low = int(parts[0]), int(parts[1])
            return None if high >= max(low, 1) else "MAX must be ≥ MIN and ≥ 1"

        def done(text: str | None) -> None:
            if text:
                high, low = (int(p) for p in text.replace(" ", "").split(","))
                self.tq.request_action(verbs.autoscale(targets, high, low, self.tq.source.cli_broker))

        self.app.push_screen(
            PromptScreen("Autoscale", f"Pool size range for {', '.join(targets)} as MAX,MIN:", current, check=check),
            callback=done,
        )

    def action_add_consumer(self) -> None:
        if not (targets := self._targets()):
            return
        known = [q.name for q in queue_rows(self.model)]

        def done(queue: str | None) -> None:
            if queue and queue.strip():
                self.tq.request_action(verbs.add_consumer(targets, queue.strip(), self.tq.source.cli_broker))

        self.app.push_screen(
            PromptScreen(
                "Add consumer",
                f"Queue for {', '.join(targets)} to consume:",
                suggestions=known,
                check=lambda t: None if t.strip() else "name a queue",
            ),
            callback=done,
        )

    def action_cancel_consumer(self) -> None:
        if not (targets := self._targets()):
            return
        queues = sorted({q for w in self._selected_rows() for q in w.queues})
        if not queues:
            self.notify("the selected workers report no queues (yet)", severity="warning")
            return
        depths = {q.name: q for q in queue_rows(self.model)}

        def done(queue: str | None) -> None:
            if not queue:
                return
            row = depths.get(queue)
            left = [c for c in (row.consumers if row else []) if c not in targets]
            self.tq.request_action(
                verbs.cancel_consumer(targets, queue, row.depth if row else 0, left, self.tq.source.cli_broker)
            )

        self.app.push_screen(
            ChoiceScreen(
                f"Stop consuming on {', '.join(targets)}",
                [(q, f"{q}  ({depths[q].depth if q in depths else '?'} waiting)") for q in queues],
            ),
            callback=done,
        )

    def action_drain(self) -> None:
        if targets := self._targets():
            rows = self._selected_rows()
            self.tq.request_action(
                verbs.drain(
                    targets,
                    sum(w.active or 0 for w in rows),
                    sum(w.reserved or 0 for w in rows),
                    self._orphaned(targets),
                    self.tq.source.cli_broker,
                )
            )

    def action_shutdown(self) -> None:
        if targets := self._targets():
            rows = self._selected_rows()
            self.tq.request_action(
                verbs.shutdown(
                    targets, sum(w.active or 0 for w in rows), self._orphaned(targets), self.tq.source.cli_broker
                )
            )

    def action_enable_events(self) -> None:
        if targets := self._targets():
            self.tq.request_action(verbs.enable_events(targets, self.tq.source.cli_broker))

    def current_command(self) -> str | None:
        targets = self.table.targets()
        return verbs.cli("workers", "-d", ",".join(targets), broker=self.tq.source.cli_broker) if targets else None

    def on_data_table_row_highlighted(self) -> None:
        self.query_one("#detail", Static).update(self._detail())
