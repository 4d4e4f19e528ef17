"""4 · Tasks: the live tail, newest first; filter, pause, follow; retry, revoke, terminate."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding

from engine.events.state import TaskView
from tqctl.tui import format as fmt
from tqctl.tui import verbs
from tqctl.tui.editing import finish_edit_retry, start_edit_retry
from tqctl.tui.messages import Loaded
from tqctl.tui.screens.base import TableScreen, text_filter
from tqctl.tui.screens.dialogs import ChoiceScreen
from tqctl.tui.widgets.table import Col

LIMIT = 500
SCAN = 20_000
STATE_CYCLE = (None, "FAILURE", "STARTED", "RECEIVED", "RETRY", "REVOKED", "SUCCESS", "PENDING")
SIGNALS = [
    ("SIGTERM", "SIGTERM  ask the task's process to stop (default)"),
    ("SIGINT", "SIGINT   like ctrl+c in the task"),
    ("SIGQUIT", "SIGQUIT  stop and dump core"),
    ("SIGKILL", "SIGKILL  kill at once: no cleanup, the pool replaces the process"),
    ("SIGUSR1", "SIGUSR1  application-defined"),
]
COLUMNS = [
    Col("state", "STATE", 10, 1),
    Col("name", "TASK", 20, 1, keep_end=True),
    Col("id", "ID", 8, 2),
    Col("when", "AGE", 4, 2),
    Col("worker", "WORKER", 12, 4),
    Col("runtime", "RUNTIME", 7, 5),
    Col("detail", "DETAIL", 10, 3, grow=True),
]


def resolve_state(text: str | None) -> str | None:
    if not text:
        return None
    word = text.upper()
    return next((s for s in fmt.STATES if s.startswith(word)), word)


def task_cells(task: TaskView, now: float) -> list[str | Text]:
    if task.state == "FAILURE":
        detail = task.exception or ""
    elif task.state == "SUCCESS":
        detail = f"→ {task.result}" if task.result is not None else ""
    else:
        detail = f"{task.args or ''} {task.kwargs if task.kwargs not in (None, '{}') else ''}".strip()
    return [
        fmt.state_text(task.state),
        task.name or "?",
        fmt.short_id(task.uuid),
        fmt.since(now, task.timestamp),
        task.worker or "-",
        fmt.duration(task.runtime),
        fmt.clip(detail, 80),
    ]


def describe_tasks(tasks: list[TaskView]) -> str:
    names: dict[str, int] = {}
    for t in tasks:
        names[t.name or "?"] = names.get(t.name or "?", 0) + 1
    running = sum(1 for t in tasks if t.state == "STARTED")
    waiting = sum(1 for t in tasks if t.state in ("PENDING", "RECEIVED", "RETRY"))
    done = len(tasks) - running - waiting
    parts = ", ".join(f"{n} × {name}" for name, n in sorted(names.items(), key=lambda kv: -kv[1])[:3])
    return f"{parts} ({waiting} waiting, {running} running, {done} already finished)"


class TasksScreen(TableScreen):
    NAV = "tasks"
    TITLE = "Tasks"
    COLUMNS = COLUMNS
    MARKS = True
    WRITE_ACTIONS = frozenset({"retry", "retry_edited", "revoke", "terminate"})
    BINDINGS = [
        Binding("enter", "open", "open"),
        Binding("s", "cycle_state", "state"),
        Binding("Z", "pause", "pause"),
        Binding("p", "pause", "pause", show=False),
        Binding("F", "follow", "follow"),
        Binding("r", "retry", "retry"),
        Binding("R", "retry_edited", "edit+retry", show=False),
        Binding("ctrl+d", "revoke", "revoke"),
        Binding("ctrl+k", "terminate", "terminate", show=False),
        Binding("space", "mark", "mark", show=False),
        Binding("ctrl+a", "mark_all", "mark all shown", show=False),
        Binding("U", "unmark", "unmark all", show=False),
        Binding("c", "copy_id", "copy id", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.state_filter: str | None = None
        self.paused = False
        self.following: str | None = None
        self._shown: list[TaskView] = []
        self._matched = 0

    def on_mount(self) -> None:
        self.table.follow_key = False

    def query_tasks(self) -> list[TaskView]:
        fields, needles = text_filter(self.filter_text)
        state = self.state_filter or resolve_state(fields.get("state"))
        name, worker, queue = fields.get("name"), fields.get("worker"), fields.get("queue")
        plain = [p.pattern for keep, p in needles if keep and p.pattern.replace("\\", "").isalnum()]
        simple = len(needles) == 1 and len(plain) == 1 and not (name or worker or queue)
        if simple:
            found = self.model.state.tasks(state=state, text=plain[0], limit=LIMIT)
            self._matched = len(found)
            return found
        pool = self.model.state.tasks(state=state, limit=SCAN if (needles or name or worker or queue) else LIMIT)
        out = []
        for t in pool:
            if name and name.lower() not in (t.name or "").lower():
                continue
            if worker and worker.lower() not in (t.worker or "").lower():
                continue
            if queue and queue != t.queue:
                continue
            if needles:
                line = " ".join(
                    str(v) for v in (t.uuid, t.name, t.state, t.worker, t.args, t.kwargs, t.result, t.exception) if v
                )
                if not all(bool(p.search(line)) == keep for keep, p in needles):
                    continue
            out.append(t)
        self._matched = len(out)
        return out[:LIMIT]

    def render_body(self, force: bool) -> None:
        if not self.paused or force and not self._shown:
            self._shown = self.query_tasks()
            now = self.model.now()
            # On the top row the cursor tails the newest task; moved below it, it stays on its task
            # while newer ones push it down (as in toolong), so what a key acts on is what was picked.
            self.table.follow_key = bool(self.following) or self.table.cursor_row > 0
            self.table.set_rows([(t.uuid, task_cells(t, now)) for t in self._shown])
            if self.following:
                self.table.select_key(self.following)
        self.status(self.status_line(len(self._shown)))

    def status_line(self, shown: int) -> Text:
        stats = self.model.state.stats(self.model.now())
        text = Text.assemble(("Tasks ", "bold"), f"{fmt.count(stats['tasks'])} tracked · ")
        if self._matched > shown:  # the table's cap: say it is the newest, and how to reach the rest
            text.append(f"newest {shown} shown of {fmt.count(self._matched)} (/ narrows)")
        else:
            text.append(f"{shown} shown")
        if self.table.marked:  # early: what r and ctrl+d act on must not be the part cut at 80 columns
            text.append(f" · {len(self.table.marked)} marked", style="bold")
        if self.state_filter:
            text.append(f" · state {fmt.state_plain(self.state_filter)}", style="bold")
        if self.filter_text:
            text.append(f" · /{self.filter_text}", style="bold")
        if self.paused:
            text.append(" · ‖ PAUSED (Z resumes)", style="bold reverse")
        if self.following:
            text.append(f" · following {fmt.short_id(self.following)} (F stops)", style="bold")
        return text

    # -- selection --------------------------------------------------------------------------------
    def selected(self) -> list[TaskView]:
        keys = self.table.targets()
        return [t for t in (self.model.state.task(k) for k in keys) if t is not None]

    def _one(self) -> TaskView | None:
        key = self.table.current_key
        task = self.model.state.task(key) if key else None
        if task is None:
            self.notify("no task selected", severity="warning", timeout=2)
        return task

    # -- keys -------------------------------------------------------------------------------------
    def action_open(self) -> None:
        if task := self._one():
            self.tq.open_task(task.uuid)

    def action_cycle_state(self) -> None:
        index = STATE_CYCLE.index(self.state_filter) if self.state_filter in STATE_CYCLE else 0
        self.state_filter = STATE_CYCLE[(index + 1) % len(STATE_CYCLE)]
        self.render_body(True)

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.refresh_view(True)

    def action_follow(self) -> None:
        self.following = None if self.following else self.table.current_key
        self.table.follow_key = bool(self.following)
        self.render_body(True)

    def action_mark(self) -> None:
        self.table.toggle_mark()
        self.status(self.status_line(len(self._shown)))

    def action_mark_all(self) -> None:
        self.table.mark_all()
        self.status(self.status_line(len(self._shown)))

    def action_unmark(self) -> None:
        self.table.clear_marks()
        self.status(self.status_line(len(self._shown)))

    def action_copy_id(self) -> None:
        if task := self._one():
            self.app.copy_to_clipboard(task.uuid)
            self.notify(task.uuid, title="copied (OSC 52)", timeout=3)

    def action_retry(self) -> None:
        """The marked rows when any are marked (as revoke), after saying how many; else the cursor row."""
        if self.table.marked_shown():
            tasks = self.selected()
            self.tq.request_action(
                verbs.retry_many([t.uuid for t in tasks], describe_tasks(tasks), self.tq.source.cli_broker)
            )
        elif task := self._one():
            self.tq.request_action(verbs.retry(task.uuid, task.name, self.tq.source.cli_broker))

    def action_retry_edited(self) -> None:
        """One task's arguments are edited at a time: a single marked row is that task, several are refused
        (not silently swapped for the cursor row)."""
        marked = self.selected() if self.table.marked_shown() else []
        if len(marked) > 1:
            self.notify(
                f"R edits one task; {len(marked)} are marked (r retries them as sent, U unmarks)",
                severity="warning",
                timeout=4,
            )
            return
        if task := (marked[0] if marked else self._one()):
            start_edit_retry(self, task.uuid, task.name, task.args, task.kwargs, task.queue)

    def on_loaded(self, message: Loaded) -> None:
        if message.key.startswith("edit:"):
            finish_edit_retry(self.tq, message.key[5:], message)

    def action_revoke(self) -> None:
        self._revoke(False)

    def action_terminate(self) -> None:
        def chosen(signal: str | None) -> None:
            if signal:
                self._revoke(True, signal)

        self.app.push_screen(ChoiceScreen("Terminate with which signal?", SIGNALS), callback=chosen)

    def _revoke(self, terminate: bool, signal: str = "SIGTERM") -> None:
        tasks = self.selected()
        if not tasks:
            self.notify("no task selected", severity="warning", timeout=2)
            return
        workers = sorted({t.worker for t in tasks if t.worker and t.state == "STARTED"})
        self.tq.request_action(
            verbs.revoke(
                [t.uuid for t in tasks],
                describe_tasks(tasks),
                workers,
                self.tq.source.cli_broker,
                terminate=terminate,
                signal=signal,
            )
        )

    def current_command(self) -> str | None:
        key = self.table.current_key
        return verbs.cli("task", key, broker=self.tq.source.cli_broker) if key else None
