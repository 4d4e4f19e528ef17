"""6 · Failures: the inbox grouped by fingerprint; retry a group at a chosen rate; delete."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding

from tqctl.tui import format as fmt
from tqctl.tui import verbs
from tqctl.tui.editing import finish_edit_retry, start_edit_retry
from tqctl.tui.messages import Loaded
from tqctl.tui.screens.base import TableScreen
from tqctl.tui.screens.dialogs import PromptScreen
from tqctl.tui.views import GroupRow, failure_groups
from tqctl.tui.widgets.table import Col

COLUMNS = [
    Col("open", "OPEN", 5, 1),
    Col("total", "TOTAL", 6, 3),
    Col("name", "TASK", 18, 1, keep_end=True),
    Col("exc", "EXCEPTION", 14, 2),
    Col("sample", "MESSAGE", 20, 1, grow=True),
    Col("last", "LAST", 5, 2),
    Col("first", "FIRST", 5, 4),
    Col("fp", "FINGERPRINT", 12, 5),
]
MEMBER_COLUMNS = [
    Col("id", "ID", 8, 1),
    Col("when", "AGE", 5, 1),
    Col("worker", "WORKER", 14, 2),
    Col("stored", "RETRY", 8, 1),
    Col("exc", "EXCEPTION", 30, 1, grow=True),
]


def label(group: GroupRow) -> str:
    return f"{group.name or '?'} {group.exc_type or ''}: {fmt.clip(group.sample, 40)}".strip()


def rate_check(text: str) -> str | None:
    try:
        value = float(text)
    except ValueError:
        return "a number of tasks per second, e.g. 5 or 0.5"
    return None if 0 < value <= 1000 else "between 0 and 1000 per second"


class FailuresScreen(TableScreen):
    NAV = "failures"
    TITLE = "Failures"
    COLUMNS = COLUMNS
    WRITE_ACTIONS = frozenset({"retry_group", "delete_group"})
    BINDINGS = [
        Binding("enter", "open", "open"),
        Binding("r", "retry_group", "retry group"),
        Binding("ctrl+d", "delete_group", "delete group"),
    ]

    def rows(self) -> list[tuple[str, list]]:
        self._groups = failure_groups(self.model)
        now = self.model.now()
        return [
            (
                g.fingerprint,
                [
                    Text(f"✗ {g.open}", style="bold red" if g.open else "dim"),
                    fmt.count(g.total),
                    g.name or "?",
                    g.exc_type or "-",
                    fmt.clip(g.sample, 120),
                    fmt.since(now, g.last_seen),
                    fmt.since(now, g.first_seen),
                    g.fingerprint,
                ],
            )
            for g in self._groups
        ]

    def status_line(self, shown: int) -> Text:
        open_ = sum(g.open for g in self._groups)
        groups = f"{shown} group{'' if shown == 1 else 's'}"
        text = Text.assemble(
            ("Failures ", "bold"),
            f"{open_} open in {groups} · grouped by task, exception type and message (numbers and ids ignored)",
        )
        if not self.model.history_available:
            text.append(" · from events only: no stored messages (retry needs tqctl workers)", style="yellow")
        return text

    def _selected(self) -> GroupRow | None:
        key = self.table.current_key
        group = next((g for g in getattr(self, "_groups", []) if g.fingerprint == key), None)
        if group is None:
            self.notify("no group selected", severity="warning", timeout=2)
        return group

    def action_open(self) -> None:
        if group := self._selected():
            self.app.push_screen(GroupScreen(group.fingerprint))

    def action_retry_group(self) -> None:
        group = self._selected()
        if group is None:
            return
        ids = [m.id for m in group.members if m.stored]
        if not ids:
            self.notify(
                "no stored message in this group: open it and use R to retry one with edited arguments",
                severity="warning",
            )
            return

        def chosen(text: str | None) -> None:
            if text:
                self.tq.request_action(
                    verbs.retry_group(
                        group.fingerprint,
                        label(group),
                        ids,
                        len(group.members) - len(ids),
                        float(text),
                        self.tq.source.cli_broker,
                    )
                )

        self.app.push_screen(
            PromptScreen(f"Retry {len(ids)} failures", "Tasks per second (throttle):", "5", check=rate_check),
            callback=chosen,
        )

    def action_delete_group(self) -> None:
        if group := self._selected():
            ids = [m.id for m in group.members if m.stored]
            if not ids:
                self.notify("nothing stored to delete: these failures were only seen as events", severity="warning")
                return
            self.tq.request_action(
                verbs.delete_failures(ids, label(group), group.fingerprint, self.tq.source.cli_broker)
            )

    def current_command(self) -> str | None:
        group = next((g for g in getattr(self, "_groups", []) if g.fingerprint == self.table.current_key), None)
        return verbs.cli("failures", "--name", group.name or "*", broker=self.tq.source.cli_broker) if group else None


class GroupScreen(TableScreen):
    """The failures of one group, newest first."""

    NAV = "failures"
    TITLE = "Failure group"
    COLUMNS = MEMBER_COLUMNS
    MARKS = True
    WRITE_ACTIONS = frozenset({"retry", "retry_edited", "delete"})
    BINDINGS = [
        Binding("enter", "open", "open"),
        Binding("r", "retry", "retry"),
        Binding("R", "retry_edited", "edit+retry"),
        Binding("ctrl+d", "delete", "delete"),
        Binding("space", "mark", "mark", show=False),
    ]

    def __init__(self, fingerprint: str) -> None:
        super().__init__()
        self.fingerprint = fingerprint

    def group(self) -> GroupRow | None:
        return next((g for g in failure_groups(self.model) if g.fingerprint == self.fingerprint), None)

    def rows(self) -> list[tuple[str, list]]:
        group = self._group = self.group()
        now = self.model.now()
        members = group.members if group else []
        return [
            (
                m.id,
                [
                    fmt.short_id(m.id),
                    fmt.since(now, m.when),
                    m.worker or "-",
                    Text("✓ stored", style="green") if m.stored else Text("– events", style="dim"),
                    fmt.clip(m.exception, 200),
                ],
            )
            for m in members
        ]

    def status_line(self, shown: int) -> Text:
        group = self._group
        if group is None:
            return Text("this group is empty now", style="dim")
        return Text.assemble(
            ("✗ ", "bold red"), f"{group.open} open · {group.stored} retryable as sent · ", (label(group), "bold")
        )

    def _member(self):  # noqa: ANN202
        key = self.table.current_key
        group = self._group
        return next((m for m in (group.members if group else []) if m.id == key), None)

    def action_mark(self) -> None:
        self.table.toggle_mark()

    def action_open(self) -> None:
        if m := self._member():
            self.tq.open_task(m.id)

    def action_retry(self) -> None:
        if m := self._member():
            self.tq.request_action(verbs.retry(m.id, m.name, self.tq.source.cli_broker))

    def action_retry_edited(self) -> None:
        if m := self._member():
            task = self.model.state.task(m.id)
            start_edit_retry(
                self,
                m.id,
                m.name,
                task.args if task else None,
                task.kwargs if task else None,
                task.queue if task else None,
            )

    def on_loaded(self, message: Loaded) -> None:
        if message.key.startswith("edit:"):
            finish_edit_retry(self.tq, message.key[5:], message)

    def action_delete(self) -> None:
        group = self._group
        ids = [k for k in self.table.targets() if any(m.id == k and m.stored for m in (group.members if group else []))]
        if not ids:
            self.notify("only stored failures can be deleted", severity="warning")
            return
        self.tq.request_action(
            verbs.delete_failures(ids, label(group) if group else "?", None, self.tq.source.cli_broker)
        )

    def current_command(self) -> str | None:
        key = self.table.current_key
        return verbs.cli("task", key, broker=self.tq.source.cli_broker) if key else None
