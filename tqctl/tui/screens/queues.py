"""3 · Queues: depth, age of the oldest message, rates and consumers; peek at messages; purge."""

from __future__ import annotations

import json

from rich.text import Text
from textual.binding import Binding

from engine.broker.inspect import NotHere
from tqctl.tui import format as fmt
from tqctl.tui import verbs
from tqctl.tui.messages import Loaded
from tqctl.tui.screens.base import TableScreen
from tqctl.tui.screens.dialogs import TextScreen
from tqctl.tui.screens.overview import queue_cells
from tqctl.tui.views import queue_rows
from tqctl.tui.widgets.table import Col

COLUMNS = [
    Col("name", "QUEUE", 14, 1, grow=True),
    Col("depth", "DEPTH", 7, 1),
    Col("oldest", "OLDEST", 6, 2),
    Col("in", "IN/s", 6, 3),
    Col("out", "OUT/s", 6, 2),
    Col("drain", "DRAIN", 6, 3),
    Col("cons", "CONS", 4, 2),
    Col("warn", "HEALTH", 16, 1),
    Col("consumers", "CONSUMERS", 24, 4),
]
PEEK_COLUMNS = [
    Col("pos", "#", 4, 1),
    Col("name", "TASK", 22, 1, grow=True, keep_end=True),
    Col("id", "ID", 8, 1),
    Col("age", "AGE", 5, 2),
    Col("prio", "PRI", 3, 4),
    Col("retries", "TRY", 3, 4),
    Col("args", "ARGS", 20, 3),
]


class QueuesScreen(TableScreen):
    NAV = "queues"
    TITLE = "Queues"
    COLUMNS = COLUMNS
    WRITE_ACTIONS = frozenset({"purge"})
    BINDINGS = [
        Binding("enter", "peek", "peek"),
        Binding("P", "purge", "purge"),
    ]

    def rows(self) -> list[tuple[str, list]]:
        self._rows = queue_rows(self.model)
        return [(q.name, [*queue_cells(q), ", ".join(q.consumers) or "-"]) for q in self._rows]

    def status_line(self, shown: int) -> Text:
        total = sum(q.depth for q in self._rows)
        note = self.model.queue_note  # the listing failed: say so rather than look complete
        drain = " · DRAIN: time to empty at current rates" if self.table.shows("drain") else ""
        peek = "enter peeks" if self.can_peek else "no peeking on RabbitMQ"
        tail = ("⚠ " + note, "yellow") if note else f"{peek}{drain}"
        return Text.assemble(("Queues ", "bold"), f"{shown} · {fmt.count(total)} waiting · ", tail)

    @property
    def can_peek(self) -> bool:
        return getattr(self.tq.source, "can_peek", True)

    def unavailable(self, action: str) -> str | None:
        """Why a key of this screen does nothing on this broker (help says so next to it)."""
        return "not on RabbitMQ" if action == "peek" and not self.can_peek else None

    def _selected(self):  # noqa: ANN202
        key = self.table.current_key
        return next((q for q in getattr(self, "_rows", []) if q.name == key), None)

    def action_peek(self) -> None:
        row = self._selected()
        if row is not None:
            self.app.push_screen(PeekScreen(row.name))

    def action_purge(self) -> None:
        row = self._selected()
        if row is None:
            return
        self.tq.request_action(verbs.purge(row.name, row.depth, row.consumers, self.tq.source.cli_broker))

    def current_command(self) -> str | None:
        row = self._selected()
        return verbs.cli("queues", "-Q", row.name, broker=self.tq.source.cli_broker) if row else None


class PeekScreen(TableScreen):
    """The next messages out of one queue (a read: nothing is taken off the queue)."""

    NAV = "queues"
    TITLE = "Peek"
    COLUMNS = PEEK_COLUMNS
    BINDINGS = [Binding("enter", "show", "show"), Binding("r", "reload", "reload")]

    def __init__(self, queue: str) -> None:
        super().__init__()
        self.queue = queue
        self.messages: list[dict] = []
        self.loaded = False

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        queue = self.queue
        reader = self.tq.source.reader

        def load() -> None:
            try:
                self.post_message(Loaded(f"peek:{queue}", reader.peek(queue, 200)))
            except NotHere as exc:  # the broker cannot do it (RabbitMQ): the reason is the whole story
                self.post_message(Loaded(f"peek:{queue}", [], str(exc)))
            except Exception as exc:  # shown in the status line
                self.post_message(Loaded(f"peek:{queue}", [], f"{type(exc).__name__}: {exc}"))

        self.run_worker(load, thread=True, exclusive=True, group="peek")

    def on_loaded(self, message: Loaded) -> None:
        if message.key == f"peek:{self.queue}":
            self.messages, self.loaded = message.data, True
            self.error = message.error
            self.refresh_view(True)  # from a thread: may land while the app quits

    def rows(self) -> list[tuple[str, list]]:
        now = self.model.now()
        out = []
        for i, m in enumerate(self.messages, 1):
            out.append(
                (
                    f"{i}:{m.get('id')}",
                    [
                        str(i),
                        m.get("name") or Text("(undecodable)", style="red"),
                        fmt.short_id(m.get("id")),
                        fmt.since(now, m.get("sent_at")),
                        str(m.get("priority") or 0),
                        str(m.get("retries") or 0),
                        fmt.clip(m.get("args"), 60),
                    ],
                )
            )
        return out

    def status_line(self, shown: int) -> Text:
        if not self.loaded:
            return Text(f"Peek {self.queue}: loading…")
        if getattr(self, "error", None):
            return Text(f"Peek {self.queue}: {self.error}", style="red")
        return Text.assemble(
            (f"Peek {self.queue} ", "bold"), f"· next {shown} out, first at the top · nothing is taken off the queue"
        )

    def action_show(self) -> None:
        key = self.table.current_key
        if key is None:
            return
        index = int(key.split(":", 1)[0]) - 1
        message = self.messages[index]
        self.app.push_screen(
            TextScreen(f"{self.queue} · message {index + 1}", json.dumps(message, indent=2, default=str))
        )

    def current_command(self) -> str | None:
        return verbs.cli("queues", "-Q", self.queue, broker=self.tq.source.cli_broker)
