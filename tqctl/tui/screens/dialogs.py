"""Modal questions: confirm (focus on Cancel, typed name for purge), prompt, choice, text, help, quit."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from tqctl.tui.actions import Action
from tqctl.tui.widgets.field import Field


class Dialog(ModalScreen):
    DEFAULT_CSS = """
    Dialog { align: center middle; }
    Dialog > Vertical { width: 76; max-width: 100%; height: auto; max-height: 100%; border: round $primary;
                        background: $surface; padding: 0 1; }
    Dialog > Vertical.-destructive { border: round $error; }
    Dialog .title { text-style: bold; width: 1fr; }
    Dialog .hint { color: $text-muted; }
    Dialog .buttons { height: 3; align-horizontal: right; }
    Dialog Button { margin-left: 1; min-width: 10; }
    """
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("left", "app.focus_previous", show=False),
        Binding("right", "app.focus_next", show=False),
    ]

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(Dialog):
    """Shows the exact scope and the equivalent command; Cancel has the focus."""

    BINDINGS = [Binding("exclamation_mark", "copy", "copy command")]

    def __init__(self, action: Action) -> None:
        super().__init__()
        self.action_ = action

    def compose(self) -> ComposeResult:
        a = self.action_
        with Vertical(classes="-destructive" if a.destructive else ""):
            yield Label(("⚠ " if a.destructive else "") + a.title, classes="title")
            for line in a.scope:
                yield Static(Text("• " + line), classes="scope")
            yield Static(Text("≡ " + a.command, style="italic"), classes="hint")
            if a.typed:
                yield Static(f"Type {a.typed!r} to confirm:")
                yield Field(placeholder="the exact name, then enter", id="typed", select_on_focus=False)
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button(
                    a.button, id="confirm", variant="error" if a.destructive else "primary", disabled=bool(a.typed)
                )
            yield Static(
                ("enter " + a.button.lower() + " · " if a.enter_confirms else "")
                + "esc cancel · ! copy command"
                + (" · type the name, then enter" if a.typed else ""),
                classes="hint",
            )

    def on_mount(self) -> None:
        self.query_one("#confirm" if self.action_.enter_confirms else "#cancel", Button).focus()

    def on_key(self, event) -> None:  # noqa: ANN001
        if self.action_.typed and event.is_printable and event.character and event.character != "!":
            field = self.query_one("#typed", Input)
            if not field.has_focus:
                field.focus()
                field.insert_text_at_cursor(event.character)
                event.stop()
                event.prevent_default()

    @on(Input.Changed, "#typed")
    def _typed(self, event: Input.Changed) -> None:
        self.query_one("#confirm", Button).disabled = event.value != self.action_.typed

    @on(Input.Submitted, "#typed")
    def _submitted(self, event: Input.Submitted) -> None:
        if event.value == self.action_.typed:
            self.dismiss(True)
        else:
            self.notify(f"type {self.action_.typed!r} exactly", severity="warning")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_copy(self) -> None:
        self.app.copy_command(self.action_.command)  # type: ignore[attr-defined]

    def action_cancel(self) -> None:
        self.dismiss(False)


class PromptScreen(Dialog):
    """One line of input with a check; returns the text or None."""

    def __init__(
        self,
        title: str,
        label: str,
        value: str = "",
        *,
        suggestions: Sequence[str] = (),
        check: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__()
        self.title_, self.label, self.value, self.suggestions, self.check = title, label, value, suggestions, check

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_, classes="title")
            yield Static(self.label)
            yield Field(
                self.value, id="value", suggester=SuggestFromList(self.suggestions) if self.suggestions else None
            )
            yield Static("", id="error", classes="hint")
            yield Static("enter ok · esc cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        problem = self.check(event.value) if self.check else None
        if problem:
            self.query_one("#error", Static).update(Text("✗ " + problem))
            return
        self.dismiss(event.value)


class ChoiceScreen(Dialog):
    def __init__(self, title: str, choices: Sequence[tuple[str, str]], hint: str = "") -> None:
        super().__init__()
        self.title_, self.choices, self.hint = title, choices, hint

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_, classes="title")
            yield OptionList(*[Option(label, id=value) for value, label in self.choices])
            yield Static(self.hint or "enter choose · esc cancel", classes="hint")

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


class TextScreen(Dialog):
    """A scrollable read-only text (raw JSON, a traceback); ``c`` copies it."""

    DEFAULT_CSS = """
    TextScreen > Vertical { width: 100%; height: 100%; border: round $primary; }
    TextScreen VerticalScroll { height: 1fr; }
    """
    BINDINGS = [Binding("c", "copy", "copy"), Binding("q", "cancel", "close", show=False)]

    def __init__(self, title: str, body: str) -> None:
        super().__init__()
        self.title_, self.body = title, body

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_, classes="title")
            with VerticalScroll():
                yield Static(Text(self.body), id="body")
            yield Static("esc close · c copy · ↑↓ PgUp PgDn scroll", classes="hint")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.body)
        self.notify("copied (OSC 52)", timeout=2)

    def set_body(self, body: str) -> None:
        """New text once a read in a thread lands (the screen opens at once with what is known)."""
        self.body = body
        self.query_one("#body", Static).update(Text(body))


class HelpScreen(TextScreen):
    def __init__(self, title: str, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        lines: list[str] = []
        for heading, rows in sections:
            lines.append(heading)
            lines += [f"  {key:<12} {text}" for key, text in rows]
            lines.append("")
        super().__init__(title, "\n".join(lines).rstrip())


class CommandScreen(ModalScreen):
    """k9s's ``:`` prompt at the bottom: ``:tasks /charge``, ``:task ID``, ``:q``."""

    DEFAULT_CSS = """
    CommandScreen { align: left bottom; background: transparent; }
    CommandScreen > Horizontal { dock: bottom; height: 1; background: $boost; }
    CommandScreen Label { width: 2; padding-left: 1; }
    CommandScreen Input, CommandScreen Input:focus { width: 1fr; border: none; height: 1; padding: 0; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__()
        self.names = names

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Label(":")
            yield Field(
                placeholder="overview workers queues tasks failures scheduled dead audit · task ID · q",
                suggester=SuggestFromList(self.names, case_sensitive=False),
                id="command",
            )

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip().lstrip(":"))

    def action_cancel(self) -> None:
        self.dismiss(None)


class QuitScreen(Dialog):
    """Leaving ``tqctl up``: stop what it started, or leave it running."""

    BINDINGS = [Binding("ctrl+c", "stop", show=False, priority=True)]

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Leave the console", classes="title")
            yield Static(f"tqctl up started {self.what}. Stop them now? (warm shutdown: running tasks finish)")
            with Horizontal(classes="buttons"):
                yield Button("Stay", id="stay")
                yield Button("Leave running", id="leave")
                yield Button("Stop them", id="stop", variant="warning")
            yield Static("esc stay · ctrl+c stop them and quit", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#stop", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "stay" else event.button.id)

    def action_stop(self) -> None:
        self.dismiss("stop")
