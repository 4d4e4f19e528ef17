"""1 · Overview: backlog health per queue, the workers in one line, throughput, blind spots."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from tqctl.tui import format as fmt
from tqctl.tui import verbs
from tqctl.tui.screens.base import ConsoleScreen, row_matches, text_filter
from tqctl.tui.views import QueueRow, WorkerRow, health_lines, queue_rows, worker_rows
from tqctl.tui.widgets.table import Col, ConsoleTable

STATUS = {"online": ("●", "green"), "no-events": ("◐", "yellow"), "offline": ("○", "dim")}

QUEUE_COLUMNS = [
    Col("name", "QUEUE", 12, 1),
    Col("depth", "DEPTH", 6, 1),
    Col("oldest", "OLDEST", 6, 2),
    Col("in", "IN/s", 5, 2),
    Col("out", "OUT/s", 5, 2),
    Col("drain", "DRAIN", 5, 2),
    Col("cons", "CONS", 4, 3),
    Col("warn", "HEALTH", 14, 1, grow=True),
]
WORKER_COLUMNS = [
    Col("host", "WORKER", 16, 1, grow=True),
    Col("status", "STATUS", 11, 1),
    Col("busy", "BUSY", 5, 1),
    Col("rate", "DONE/s", 6, 2),
    Col("failed", "FAILED", 6, 3),
    Col("load", "LOAD", 4, 3),
    Col("hb", "HEARTBEAT", 9, 2),
]


def worker_summary_cells(w: WorkerRow, rate: float) -> list[str | Text]:
    glyph, style = STATUS[w.status]
    busy = f"{w.active if w.active is not None else '-'}/{w.current if w.current is not None else '-'}"
    return [
        w.hostname,
        Text(f"{glyph} {w.status}", style=style),
        busy,
        fmt.rate(rate),
        str(w.failed),
        "-" if w.load is None else f"{w.load:.1f}",
        fmt.age(w.heartbeat_age) + " ago" if w.heartbeat_age else "-",
    ]


def queue_cells(row: QueueRow) -> list[str | Text]:
    if row.warnings:
        warn = Text("⚠ " + ", ".join(row.warnings), style="bold yellow")
    elif not row.consumers:  # empty: nothing waits, but what is sent there will until someone consumes it
        warn = Text("· no consumer", style="dim")
    else:
        warn = Text("✓ ok", style="green")
    drain = "-" if row.depth == 0 else (fmt.age(row.drain) if row.drain is not None else "never")
    return [
        row.name,
        fmt.count(row.depth),
        fmt.age(row.oldest_age),
        fmt.rate(row.in_rate),
        fmt.rate(row.out_rate),
        drain,
        str(len(row.consumers)),
        warn,
    ]


class OverviewScreen(ConsoleScreen):
    NAV = "overview"
    TITLE = "Overview"
    WRITE_ACTIONS = frozenset({"enable_events"})
    BINDINGS = [
        Binding("enter", "open_queue", "the queue on the Queues screen", show=False),
        Binding("E", "enable_events", "enable events"),
    ]

    def compose_body(self) -> ComposeResult:
        yield Static(id="status", classes="status")
        yield ConsoleTable(QUEUE_COLUMNS, id="queues")
        yield Static(id="workers-line", classes="status")
        yield ConsoleTable(WORKER_COLUMNS, id="workers")
        yield Static(id="spark", classes="summary")
        yield Static(id="health", classes="summary")

    def render_body(self, force: bool) -> None:
        model = self.model
        workers = worker_rows(model)
        queues = queue_rows(model, workers)
        rows = [(q.name, queue_cells(q)) for q in queues]
        if self.filter_text:
            _, needles = text_filter(self.filter_text)
            rows = [r for r in rows if row_matches([str(c) for c in r[1]], needles)]
        self.query_one("#queues", ConsoleTable).set_rows(rows)
        waiting = sum(q.depth for q in queues)
        warned = sum(1 for q in queues if q.warnings)
        self.status(
            Text.assemble(
                ("Queues ", "bold"),
                f"{len(queues)} · {fmt.count(waiting)} waiting",
                (f" · ⚠ {warned} need attention" if warned else "", "bold yellow"),
            )
        )
        self.query_one("#workers-line", Static).update(self._workers_line(workers))
        rates = self.model.state.rates(self.model.now())["processed_per_second_by_worker"]
        self.query_one("#workers", ConsoleTable).set_rows(
            [(w.hostname, worker_summary_cells(w, rates.get(w.hostname, 0.0))) for w in workers]
        )
        self.query_one("#spark", Static).update(self._sparks())
        self.query_one("#health", Static).update(self._health(workers))

    def _workers_line(self, workers: list) -> Text:  # noqa: ANN001
        online = [w for w in workers if w.online]
        offline = len(workers) - len(online)
        procs = sum(w.current or 0 for w in online)
        line = Text.assemble(("Workers ", "bold"), f"● {len(online)} online")
        if offline:
            line.append(f" ○ {offline} offline")
        line.append(
            f" · {procs} process{'' if procs == 1 else 'es'} · {sum(w.active or 0 for w in online)} active"
            f" · {sum(w.reserved or 0 for w in online)} reserved"
        )
        return line

    def _sparks(self) -> Text:
        width = max(10, min(60, (self.size.width or 80) - 26))
        ok, failed = self.model.series("ok", width), self.model.series("failed", width)
        ok_rate, fail_rate = self.model.throughput()
        text = Text()
        text.append("Succeeded ", style="bold")
        text.append(fmt.sparkline(ok), style="green")
        text.append(f" {fmt.rate(ok_rate):>6}/s\n")
        text.append("Failed    ", style="bold")
        text.append(fmt.sparkline(failed), style="red")
        text.append(f" {fmt.rate(fail_rate):>6}/s")
        return text

    def _health(self, workers: list) -> Text:  # noqa: ANN001
        model = self.model
        lag = model.last_lag
        head = Text.assemble(("Stream ", "bold"), f"{fmt.rate(model.events_per_second())} ev/s · lag {lag:.2f}s")
        age = model.snapshot_age()
        if age is not None:
            head.append(f" · polled {fmt.age(age)} ago")
        if model.server:
            head.append(f" · {model.server}")
        lines = health_lines(model, workers)
        if not lines:
            head.append(" · ✓ no blind spots", style="green")
            return head
        return Text("\n").join([head, *(Text(line, style="yellow") for line in lines)])

    # -- actions ----------------------------------------------------------------------------------
    def action_open_queue(self) -> None:
        key = self.query_one("#queues", ConsoleTable).current_key
        self.tq.action_go("queues")
        if key:
            self.tq.screen.call_after_refresh(lambda: self.tq.screen.query_one("#table", ConsoleTable).select_key(key))

    def action_enable_events(self) -> None:
        silent = [w.hostname for w in worker_rows(self.model) if w.online and not w.events]
        if not silent:
            self.notify("every online worker already sends task events", timeout=3)
            return
        self.tq.request_action(verbs.enable_events(silent, self.tq.source.cli_broker))

    def current_command(self) -> str | None:
        return verbs.cli("queues", broker=self.tq.source.cli_broker)
