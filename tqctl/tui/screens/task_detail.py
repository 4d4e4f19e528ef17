"""5 · Task detail: full arguments, result or traceback, event timeline, canvas family, runs."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static, TabbedContent, TabPane, Tree

from engine.events.state import TaskView
from tqctl.tui import format as fmt
from tqctl.tui import verbs
from tqctl.tui.editing import finish_edit_retry, start_edit_retry
from tqctl.tui.messages import Loaded
from tqctl.tui.screens.base import ConsoleScreen
from tqctl.tui.screens.dialogs import ChoiceScreen, TextScreen
from tqctl.tui.screens.tasks import SIGNALS, describe_tasks
from tqctl.whereabouts import nowhere_line

TABS = ("args", "result", "timeline", "family", "runs")
MAX_NODES = 300


class TaskDetailScreen(ConsoleScreen):
    NAV = "tasks"
    TITLE = "Task"
    WRITE_ACTIONS = frozenset({"retry", "retry_edited", "revoke", "terminate"})
    BINDINGS = [
        Binding("r", "retry", "retry"),
        Binding("R", "retry_edited", "edit+retry"),
        Binding("ctrl+d", "revoke", "revoke"),
        Binding("ctrl+k", "terminate", "terminate"),
        Binding("left_square_bracket", "tab(-1)", "prev tab", show=False),
        Binding("right_square_bracket", "tab(1)", "next tab", show=False),
        Binding("c", "copy_id", "copy id", show=False),
        Binding("y", "raw", "raw", show=False),
        Binding("enter", "open_node", "open the task picked in Family", show=False),
    ]

    def __init__(self, task_id: str) -> None:
        super().__init__()
        self.task_id = task_id
        self.detail: dict[str, Any] | None = None
        self.detail_error: str | None = None
        self._seen: tuple[Any, ...] | None = None

    def compose_body(self) -> ComposeResult:
        yield Static(id="status", classes="status")
        yield Static(id="summary", classes="summary")
        with TabbedContent(id="tabs"):
            with TabPane("Args", id="args"), VerticalScroll():
                yield Static(id="args-body")
            with TabPane("Result", id="result"), VerticalScroll():
                yield Static(id="result-body")
            with TabPane("Timeline", id="timeline"), VerticalScroll():
                yield Static(id="timeline-body")
            with TabPane("Family", id="family"):
                yield Tree("family", id="family-tree")
            with TabPane("Runs", id="runs"), VerticalScroll():
                yield Static(id="runs-body")

    def on_mount(self) -> None:
        self.query_one("#family-tree", Tree).show_root = False
        self.load()

    def load(self) -> None:
        reader, task_id = self.tq.source.reader, self.task_id

        def fetch() -> None:
            try:
                self.post_message(Loaded(f"task:{task_id}", reader.task_detail(task_id)))
            except Exception as exc:  # shown on the screen; the event data still shows
                self.post_message(Loaded(f"task:{task_id}", None, f"{type(exc).__name__}: {exc}"))

        self.run_worker(fetch, thread=True, exclusive=True, group="detail")

    def on_loaded(self, message: Loaded) -> None:
        if message.key == f"task:{self.task_id}":
            self.detail, self.detail_error = message.data, message.error
            self.model.learn_names([(self.task_id, self._stored_name())])  # the other screens show it too
            self.refresh_view(True)  # from a thread: may land while the app quits
        elif message.key.startswith("edit:"):
            finish_edit_retry(self.tq, message.key[5:], message)

    def on_resize(self) -> None:
        self.refresh_view(True)  # the header fits its name and ID to the width

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "filter":
            return False  # nothing to filter here
        return super().check_action(action, parameters)

    @property
    def viewed_task(self) -> TaskView | None:
        return self.model.state.task(self.task_id)

    # -- rendering --------------------------------------------------------------------------------
    def render_body(self, force: bool) -> None:
        task = self.viewed_task
        key = (task.seq if task else None, task.state if task else None, id(self.detail), self.model.now() // 1)
        if key == self._seen and not force:
            return
        family_changed = self._seen is None or force or (task is not None and key[0] != self._seen[0])
        self._seen = key
        now = self.model.now()
        self.status(self._head(task))
        self.query_one("#summary", Static).update(self._summary(task, now))
        self.query_one("#args-body", Static).update(self._args(task))
        self.query_one("#result-body", Static).update(self._result(task))
        self.query_one("#timeline-body", Static).update(self._timeline(task))
        self.query_one("#runs-body", Static).update(self._runs())
        if family_changed:
            self._family(task)

    def _head(self, task: TaskView | None) -> Text:
        """State, name and ID on one line: the ID stays (whole when it fits, else its short form) and a
        long name gives way, cut at its start (the end of a dotted name says most)."""
        state = fmt.state_text(task.state if task else self._stored_state())
        name = self._task_name(task) or "?"
        width = (self.query_one("#status").size.width or self.app.size.width) - 2  # the status line's padding
        room = width - len(state) - 4
        ident = self.task_id if room - len(self.task_id) >= min(len(name), 24) else fmt.short_id(self.task_id)
        room -= len(ident)
        if len(name) > room:
            name = "…" + name[-(room - 1) :] if room > 1 else ""
        return Text.assemble(state, "  ", (name, "bold"), f"  {ident}")

    def _stored_state(self) -> str | None:
        runs = (self.detail or {}).get("runs") or []
        return runs[0].get("state") if runs else None

    def _task_name(self, task: TaskView | None) -> str | None:
        """From the live view, else from what the broker remembers: a task whose task-received
        the console missed is in the view without a name."""
        return task.name if task and task.name else self._stored_name()

    def _stored_name(self) -> str | None:
        runs = (self.detail or {}).get("runs") or []
        message = (self.detail or {}).get("message") or {}
        return message.get("name") or (runs[0].get("name") if runs else None)

    def _summary(self, task: TaskView | None, now: float) -> Text:
        if task is None:
            note = "not in the live view (evicted, or seen before the console started)"
            where = self._whereabouts()
            note += " · loading what the broker remembers…" if self.detail is None else (f"\n{where}" if where else "")
            return Text(note, style="dim")
        took = (
            f"running for {fmt.age(now - task.started)}"
            if task.state == "STARTED" and task.started
            else f"runtime {fmt.duration(_runtime(task))}"
        )
        line1 = f"worker {task.worker or '-'} · queue {task.queue or '-'} · retries {task.retries or 0} · {took}"
        times = [
            (label, getattr(task, label))
            for label in ("sent", "received", "started", "succeeded", "failed", "retried", "revoked")
            if getattr(task, label)
        ]
        line2 = " · ".join(f"{label} {fmt.clock(ts)}" for label, ts in times) or "no timestamps"
        kids = self.model.state.children(task.uuid)
        line3 = (
            f"root {fmt.short_id(task.root_id) if task.root_id and task.root_id != task.uuid else '(self)'}"
            f" · parent {fmt.short_id(task.parent_id) if task.parent_id else '-'} · children {len(kids)}"
            f" · updated {fmt.since(now, task.timestamp)} ago"
        )
        if task.eta:
            line3 += f" · eta {task.eta}"
        where = self._whereabouts() if task.state in (None, "PENDING") else None
        return Text("\n".join([line1, line2, line3] + ([where] if where else [])))

    def _whereabouts(self) -> str | None:
        """Where a task no worker took waits, or that it is nowhere: PENDING alone (as Celery and
        Flower show it) looks the same for a task still queued and one purged."""
        found = (self.detail or {}).get("whereabouts")
        if not found:
            return None
        if found.get("delayed"):
            return f"waiting in the broker's delayed set until {found['delayed'].get('eta')}"
        if found["queue"]:
            return f"waiting in {found['queue']}: position {found['position']} of {found['depth']}"
        delayed = ", not in the delayed set" if self.tq.source.can_peek else ""
        return f"in no queue: {nowhere_line(found)}{delayed} (purged, expired, or sent to another broker)"

    def _args(self, task: TaskView | None) -> Text:
        message = (self.detail or {}).get("message")
        if message:
            body = json.dumps({"args": message["args"], "kwargs": message["kwargs"]}, indent=2, default=str)
            return Text.assemble(("from the stored original message (complete; r resends exactly this)\n", "dim"), body)
        if task is None:
            return Text("no arguments known", style="dim")
        note = "from events (Python reprs; long values are cut at 1024 characters)\n"
        return Text.assemble((note, "dim"), f"args   {task.args or '()'}\nkwargs {task.kwargs or '{}'}")

    def _result(self, task: TaskView | None) -> Text:
        meta = (self.detail or {}).get("result_meta") or {}
        if task is not None and task.exception:
            text = Text.assemble(("✗ ", "bold red"), (task.exception, "bold"), "\n\n", task.traceback or "")
            return text
        if task is not None and task.result is not None:
            return Text.assemble(("✓ result ", "green"), task.result)
        if meta:
            return Text.assemble(("from the result backend\n", "dim"), json.dumps(meta, indent=2, default=str)[:20000])
        return Text("no result yet", style="dim")

    def _timeline(self, task: TaskView | None) -> Text:
        if task is None or not task.timeline:
            return Text("no events seen for this task", style="dim")
        start = task.timeline[0][1]
        lines = Text()
        for etype, ts, host in task.timeline:
            state = etype[5:].upper() if etype.startswith("task-") else etype
            glyph = fmt.STATE_GLYPHS.get(
                {"SUCCEEDED": "SUCCESS", "FAILED": "FAILURE", "RETRIED": "RETRY", "SENT": "PENDING"}.get(state, state),
                ("•", ""),
            )[0]
            lines.append(f"{fmt.clock(ts)}  +{ts - start:7.3f}s  {glyph} {etype:<15} {host or ''}\n")
        return lines

    def _runs(self) -> Text:
        if self.detail_error:
            return Text(f"could not read the broker: {self.detail_error}", style="red")
        runs = (self.detail or {}).get("runs")
        if runs is None:
            return Text("loading…", style="dim")
        if not runs:
            return Text("no run recorded in the broker's history (Celery workers do not record one)", style="dim")
        out = Text()
        for run in runs:
            out.append_text(fmt.state_text(run.get("state")))
            out.append(
                f"  {fmt.stamp(run.get('finished'))}  {run.get('worker')}  {fmt.duration(run.get('runtime'))}"
                f"{'  retry of ' + run['retry_of'] if run.get('retry_of') else ''}\n"
            )
        return out

    def _family(self, task: TaskView | None) -> None:
        tree = self.query_one("#family-tree", Tree)
        tree.clear()
        state = self.model.state
        root_id = (task.root_id if task else None) or self.task_id
        root = state.task(root_id) or task
        if root is None:
            tree.root.add_leaf(Text("not in view", style="dim"))
            return
        count = 0

        def label(t: TaskView) -> Text:
            text = Text.assemble(fmt.state_text(t.state), f" {t.name or '?'} [{fmt.short_id(t.uuid)}]")
            if t.uuid == self.task_id:
                text.append("  ◀ this task", style="bold")
            return text

        def add(node: Any, t: TaskView, depth: int) -> None:
            nonlocal count
            kids = state.children(t.uuid)
            count += 1
            branch = (
                node.add(label(t), data=t.uuid, expand=True)
                if kids and depth < 8
                else node.add_leaf(label(t), data=t.uuid)
            )
            for kid in kids:
                if count >= MAX_NODES:
                    branch.add_leaf(Text("… more", style="dim"))
                    return
                add(branch, kid, depth + 1)

        add(tree.root, root, 0)
        tree.root.expand_all()

    # -- actions ----------------------------------------------------------------------------------
    def action_tab(self, step: int) -> None:
        tabs = self.query_one("#tabs", TabbedContent)
        index = TABS.index(tabs.active) if tabs.active in TABS else 0
        tabs.active = TABS[(index + step) % len(TABS)]

    def action_open_node(self) -> None:
        tree = self.query_one("#family-tree", Tree)
        node = tree.cursor_node
        if tree.has_focus and node is not None and node.data and node.data != self.task_id:
            self.tq.open_task(node.data)

    def on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        if event.node.data and event.node.data != self.task_id:
            self.tq.open_task(event.node.data)

    def action_copy_id(self) -> None:
        self.app.copy_to_clipboard(self.task_id)
        self.notify(self.task_id, title="copied (OSC 52)", timeout=3)

    def action_raw(self) -> None:
        task = self.viewed_task
        data = {"events": task.to_dict() if task else None, "broker": self.detail}
        self.app.push_screen(TextScreen(f"task {self.task_id}", json.dumps(data, indent=2, default=str)))

    def action_retry(self) -> None:
        task = self.viewed_task
        self.tq.request_action(verbs.retry(self.task_id, self._task_name(task), self.tq.source.cli_broker))

    def action_retry_edited(self) -> None:
        task = self.viewed_task
        start_edit_retry(
            self,
            self.task_id,
            self._task_name(task),
            task.args if task else None,
            task.kwargs if task else None,
            task.queue if task else None,
        )

    def action_revoke(self) -> None:
        self._revoke(False)

    def action_terminate(self) -> None:
        self.app.push_screen(
            ChoiceScreen("Terminate with which signal?", SIGNALS),
            callback=lambda sig: self._revoke(True, sig) if sig else None,
        )

    def _revoke(self, terminate: bool, signal: str = "SIGTERM") -> None:
        task = self.viewed_task
        describe = describe_tasks([task]) if task else self.task_id
        workers = [task.worker] if task and task.worker and task.state == "STARTED" else []
        self.tq.request_action(
            verbs.revoke(
                [self.task_id], describe, workers, self.tq.source.cli_broker, terminate=terminate, signal=signal
            )
        )

    def current_command(self) -> str | None:
        return verbs.cli("task", self.task_id, broker=self.tq.source.cli_broker)


def _runtime(task: TaskView) -> float | None:
    """The worker's figure; for a failure (Celery sends none) from started to failed."""
    if task.runtime is not None:
        return task.runtime
    end = task.succeeded or task.failed
    return end - task.started if end is not None and task.started is not None and end >= task.started else None
