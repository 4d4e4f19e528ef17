"""8 · Dead letters: messages the workers could not run, with the reason; requeue or delete."""

from __future__ import annotations

import base64
import json
from typing import Any

from rich.text import Text
from textual.binding import Binding

from tqctl.tui import format as fmt
from tqctl.tui import verbs
from tqctl.tui.messages import Loaded
from tqctl.tui.screens.base import TableScreen
from tqctl.tui.screens.dialogs import TextScreen
from tqctl.tui.widgets.table import Col

COLUMNS = [
    Col("when", "AGE", 4, 1),
    Col("reason", "REASON", 20, 1),  # "✗ content_disallowed", the longest reason, whole
    Col("queue", "QUEUE", 8, 2),
    Col("task", "TASK", 18, 2, keep_end=True),
    Col("id", "DEAD ID", 8, 2),  # the dead letter's own id: what r, ctrl+d and `tqctl dead` take
    Col("detail", "DETAIL", 24, 1, grow=True),
    Col("task_id", "TASK ID", 8, 5),
    Col("worker", "WORKER", 14, 5),
]


def letter_text(letter: dict[str, Any], now: float, raw: str | None = None, note: str = "") -> str:
    """What one dead letter is: why, when (UTC and how long ago), where, and its raw message, as
    pretty JSON when it parses (with a base64 JSON body decoded), else as received."""
    where = f"{letter.get('queue') or '-'} · worker {letter.get('worker') or '-'} · {letter.get('size', '?')} bytes"
    lines = [
        f"id       {letter.get('id')} (the dead letter's: r, ctrl+d and `tqctl dead` take it)",
        f"reason   {letter.get('reason')}: {letter.get('detail') or '-'}",
        f"time     {fmt.stamp(letter.get('time'))} ({fmt.since(now, letter.get('time'))} ago)",
        f"queue    {where}",
        f"task     {letter.get('task_name') or '?'} {letter.get('task_id') or '(no task id)'}",
        "",
    ]
    if raw is None:
        return "\n".join([*lines, note or "loading the raw message…"])
    try:
        envelope = json.loads(raw)
    except ValueError:
        return "\n".join([*lines, "raw message (not JSON; as received)", _printable(raw)])
    lines += ["raw message (JSON)", json.dumps(envelope, indent=2, default=str)]
    body = _decoded_body(envelope)
    if body is not None:
        lines += ["", "body (base64-decoded)", body]
    return "\n".join(lines)


def _decoded_body(envelope: Any) -> str | None:
    """A Celery envelope's base64 body, as pretty JSON when it is JSON; None when there is none."""
    if not isinstance(envelope, dict) or (envelope.get("properties") or {}).get("body_encoding") != "base64":
        return None
    try:
        data = base64.b64decode(str(envelope.get("body", "")), validate=True)
    except ValueError:
        return None
    try:
        return json.dumps(json.loads(data), indent=2, default=str)
    except ValueError:
        return repr(data)


def _printable(text: str) -> str:
    """Control characters as escapes (``\\x00``): bytes that are not text must not drive the terminal."""
    return "".join(c if c.isprintable() or c in "\n\t" else c.encode("unicode_escape").decode() for c in text)


class DeadLetterScreen(TextScreen):
    """One dead letter, opened at once with what the list knows; the raw message is read from the
    broker in a thread (the poll's list leaves the bytes out)."""

    def __init__(self, letter: dict[str, Any], now: float) -> None:
        super().__init__(f"dead letter {letter.get('id')}", letter_text(letter, now))
        self.letter, self.now = letter, now

    def on_mount(self) -> None:
        super().on_mount()
        reader, letter_id = self.app.source.reader, str(self.letter.get("id"))  # type: ignore[attr-defined]

        def fetch() -> None:
            try:
                self.post_message(Loaded(f"dead:{letter_id}", reader.dead_letter(letter_id)))
            except Exception as exc:  # shown in place of the message
                self.post_message(Loaded(f"dead:{letter_id}", None, f"{type(exc).__name__}: {exc}"))

        self.run_worker(fetch, thread=True, exclusive=True, group="dead")

    def on_loaded(self, message: Loaded) -> None:
        if message.key != f"dead:{self.letter.get('id')}":
            return
        if message.error or message.data is None:
            note = f"could not read the raw message: {message.error}" if message.error else "no longer in the broker"
            self.set_body(letter_text(self.letter, self.now, None, note))
        else:
            self.set_body(letter_text(message.data, self.now, message.data.get("raw") or ""))


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
                    fmt.short_id(d.get("id")),
                    fmt.clip(d.get("detail"), 200),
                    fmt.short_id(d.get("task_id")),
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
            self.app.push_screen(DeadLetterScreen(letter, self.model.now()))

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
