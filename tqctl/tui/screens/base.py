"""What every console screen shares: header, broker banner, filter line, footer, read-only guard.

Screens render from ``app.model`` when the App calls ``refresh_view`` (on its timer, only for the
screen on top); they never fetch anything themselves. Write actions named in ``WRITE_ACTIONS``
vanish from the footer in read-only mode, and their keys answer with a one-line notice.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from tqctl.tui.widgets.field import Field
from tqctl.tui.widgets.header import Banner, ClusterHeader
from tqctl.tui.widgets.table import ConsoleTable

if TYPE_CHECKING:
    from tqctl.tui.app import TqctlApp
    from tqctl.tui.model import ConsoleModel


class FilterBar(Field):
    DEFAULT_CSS = """
    FilterBar { dock: bottom; height: 1; border: none; padding: 0 1; display: none; background: $boost; }
    FilterBar:focus { border: none; }
    FilterBar.-shown { display: block; }
    """


class ConsoleScreen(Screen):
    NAV = ""  # which header tab is lit
    WRITE_ACTIONS: frozenset[str] = frozenset()
    BINDINGS = [
        Binding("slash", "filter", "filter"),
        Binding("escape", "back", "back", show=False),
        Binding("exclamation_mark", "copy_command", "copy command", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""

    @property
    def tq(self) -> TqctlApp:
        return self.app  # type: ignore[return-value]

    @property
    def model(self) -> ConsoleModel:
        return self.tq.model

    def compose(self) -> ComposeResult:
        yield ClusterHeader()
        yield Banner()
        yield from self.compose_body()
        yield FilterBar(
            placeholder="filter: text or regex · state:failure name:x worker:w1 · !text excludes", id="filter"
        )
        yield Footer(compact=True, show_command_palette=False)

    def compose_body(self) -> ComposeResult:
        yield Static()

    def on_screen_resume(self) -> None:
        self.refresh_view(force=True)

    # -- rendering --------------------------------------------------------------------------------
    def refresh_view(self, force: bool = False) -> None:
        """Paint from the model, unless the screen is half built or half torn down.

        The App's refresh timer runs in its own task, so it also fires while the app quits and
        Textual removes this screen's widgets one by one (``display`` turns false first).
        """
        if not (self.app.is_running and self.is_mounted and self.display) or not self.query(Footer):
            return
        self.tq.paint_chrome(self)
        self.render_body(force)

    def render_body(self, force: bool) -> None:  # overridden
        pass

    def status(self, text: str | Text) -> None:
        for widget in self.query("#status"):
            widget.update(text)  # type: ignore[attr-defined]

    # -- read-only --------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.WRITE_ACTIONS and self.tq.read_only:
            return False
        return True

    def _write_keys(self) -> dict[str, str]:
        keys = {}
        for binding in self._bindings.key_to_bindings.values():
            for b in binding:
                if b.action in self.WRITE_ACTIONS:
                    keys[b.key] = b.description or b.action
        return keys

    def on_key(self, event: Any) -> None:
        if not self.tq.read_only or isinstance(self.focused, Input):
            return
        what = self._write_keys().get(event.key)
        if what is not None:
            event.stop()
            event.prevent_default()
            self.tq.refuse_read_only(what.split(" ", 1)[-1])

    # -- filter -----------------------------------------------------------------------------------
    def action_filter(self) -> None:
        bar = self.query_one(FilterBar)
        bar.add_class("-shown")
        bar.value = self.filter_text
        bar.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.render_body(True)

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        bar = self.query_one(FilterBar)
        if not self.filter_text:
            bar.remove_class("-shown")
        self.focus_main()

    def focus_main(self) -> None:
        tables = self.query(ConsoleTable)
        if tables:
            tables.first().focus()

    def action_back(self) -> None:
        bar = self.query_one(FilterBar)
        if bar.has_focus or self.filter_text:
            self.filter_text = ""
            bar.value = ""
            bar.remove_class("-shown")
            self.focus_main()
            self.render_body(True)
            return
        self.tq.go_back()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        bar = self.query_one(FilterBar)
        bar.value = self.filter_text
        bar.set_class(bool(self.filter_text), "-shown")
        self.render_body(True)

    def action_copy_command(self) -> None:
        command = self.current_command()
        if command:
            self.tq.copy_command(command)
        else:
            self.notify("nothing selected to copy a command for", timeout=2)

    def current_command(self) -> str | None:
        return None

    async def on_data_table_row_selected(self, event: Any) -> None:
        """Enter on a row is the table's own key: run this screen's ``enter`` binding instead."""
        event.stop()
        bindings = self._bindings.key_to_bindings.get("enter", [])
        if bindings:
            await self.run_action(bindings[0].action)


def text_filter(query: str) -> tuple[dict[str, str], list[tuple[bool, re.Pattern[str]]]]:
    """``state:failure name:charge boom !retry`` →
    ({state: failure, name: charge}, [(keep, /boom/), (drop, /retry/)])."""
    fields: dict[str, str] = {}
    needles: list[tuple[bool, re.Pattern[str]]] = []
    for word in query.split():
        key, sep, value = word.partition(":")
        if sep and key.lower() in {"state", "name", "worker", "queue"} and value:
            fields[key.lower()] = value
            continue
        keep = not word.startswith("!")
        text = word.lstrip("!")
        if not text:
            continue
        try:
            needles.append((keep, re.compile(text, re.IGNORECASE)))
        except re.error:
            needles.append((keep, re.compile(re.escape(text), re.IGNORECASE)))
    return fields, needles


def row_matches(cells: list[str], needles: list[tuple[bool, re.Pattern[str]]]) -> bool:
    line = " ".join(cells)
    return all(bool(p.search(line)) == keep for keep, p in needles)


class TableScreen(ConsoleScreen):
    """A screen whose body is one status line and one table; ``rows()`` gives complete rows."""

    COLUMNS: list[Any] = []
    MARKS = False

    def compose_body(self) -> ComposeResult:
        yield Static(id="status", classes="status")
        yield ConsoleTable(self.COLUMNS, id="table", marks=self.MARKS)

    @property
    def table(self) -> ConsoleTable:
        return self.query_one("#table", ConsoleTable)

    def rows(self) -> list[tuple[str, list[Any]]]:
        return []

    def render_body(self, force: bool) -> None:
        rows = self.rows()
        if self.filter_text:
            _, needles = text_filter(self.filter_text)
            rows = [r for r in rows if row_matches([c.plain if isinstance(c, Text) else str(c) for c in r[1]], needles)]
        self.table.set_rows(rows)
        self.status(self.status_line(len(rows)))

    def status_line(self, shown: int) -> str | Text:
        return ""
