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
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, Static

from tqctl.tui import format as fmt
from tqctl.tui.widgets.field import Field
from tqctl.tui.widgets.header import Banner, ClusterHeader
from tqctl.tui.widgets.table import ConsoleTable

if TYPE_CHECKING:
    from tqctl.tui.app import TqctlApp
    from tqctl.tui.model import ConsoleModel


class FilterBar(Field):
    DEFAULT_CSS = """
    FilterBar, FilterBar:focus { width: 1fr; min-width: 16; height: 1; border: none; padding: 0; background: $boost; }
    """


class FilterLine(Horizontal):
    """``/`` then what is typed, and what is wrong with it. Docked one line above the footer (both
    dock to the bottom, and docked widgets overlap: on the footer's line it was hidden)."""

    DEFAULT_CSS = """
    FilterLine { dock: bottom; height: 1; margin-bottom: 1; display: none; background: $boost; }
    FilterLine.-shown { display: block; }
    FilterLine > Label { width: 2; padding-left: 1; }
    FilterLine > #filter-problem { width: auto; color: $text-error; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        yield Label("/")
        yield FilterBar(
            placeholder="text or regex · state:failure name:x worker:w1 queue:q · !text excludes", id="filter"
        )
        yield Static(id="filter-problem")


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
        yield FilterLine()
        yield Footer(compact=True, show_command_palette=False)

    def compose_body(self) -> ComposeResult:
        yield Static()

    def on_mount(self) -> None:
        """A filter given before the screen was built (``:tasks /text``) is shown once it is.
        Textual also calls a subclass's own ``on_mount``: both run."""
        if self.filter_text:
            self.set_filter(self.filter_text)

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
        self.query_one(FilterLine).add_class("-shown")
        bar.value = self.filter_text
        bar.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self._show_problem()
        self.render_body(True)

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not self.filter_text:
            self.query_one(FilterLine).remove_class("-shown")
        self.focus_main()

    def _show_problem(self) -> None:
        """A word that is not a regex is searched as plain text; say so, or "0 shown" reads as no match."""
        problems = bad_patterns(self.filter_text)
        self.query_one("#filter-problem", Static).update(f"✗ bad pattern {problems[0]}" if problems else "")

    def focus_main(self) -> None:
        tables = self.query(ConsoleTable)
        if tables:
            tables.first().focus()

    def action_back(self) -> None:
        bar = self.query_one(FilterBar)
        if bar.has_focus or self.filter_text:
            self.set_filter("")
            self.focus_main()
            return
        self.tq.go_back()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        if not self.query(FilterBar):  # not built yet (``:tasks /text`` opening it): ``on_mount`` shows it
            return
        self.query_one(FilterBar).value = self.filter_text
        self.query_one(FilterLine).set_class(bool(self.filter_text), "-shown")
        self._show_problem()
        self.render_body(True)

    def action_copy_command(self) -> None:
        command = self.current_command()
        if command:
            self.tq.copy_command(command)
        else:
            self.notify("nothing selected to copy a command for", timeout=2)

    def current_command(self) -> str | None:
        return None

    def unavailable(self, action: str) -> str | None:
        """Why ``action`` cannot work on this cluster (its broker), or None: help shows it."""
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


def bad_patterns(query: str) -> list[str]:
    """``[unclosed`` → ``["'[unclosed': unterminated character set"]``: the words of a filter
    that are not regular expressions (``text_filter`` matches them as plain text)."""
    problems = []
    for word in query.split():
        key, sep, value = word.partition(":")
        if sep and key.lower() in {"state", "name", "worker", "queue"} and value:
            continue
        text = word.lstrip("!")
        try:
            re.compile(text)
        except re.error as exc:
            problems.append(f"{fmt.clip(text, 16)!r}: {exc.msg}")
    return problems


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
