"""The console App: screens (k9s-style modes), global keys, and the one-way data pipeline.

feed threads → Messages → ``ConsoleModel`` (changed only here, on the UI thread) → the screen on
top re-renders on a timer. Actions go the other way through ``ActionsMixin`` and the adapter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.filter import Monochrome
from textual.screen import Screen
from textual.worker import get_current_worker

from tqctl.tui.actions import ActionsMixin
from tqctl.tui.audit import AuditLog
from tqctl.tui.messages import ActionDone, EventsBatch, FeedStatus, SnapshotReady
from tqctl.tui.model import ConsoleModel
from tqctl.tui.nocolor import ReadableMonochrome
from tqctl.tui.screens.audit import AuditScreen
from tqctl.tui.screens.base import ConsoleScreen
from tqctl.tui.screens.dead import DeadLettersScreen
from tqctl.tui.screens.dialogs import CommandScreen, HelpScreen, QuitScreen
from tqctl.tui.screens.failures import FailuresScreen
from tqctl.tui.screens.overview import OverviewScreen
from tqctl.tui.screens.queues import QueuesScreen
from tqctl.tui.screens.scheduled import ScheduledScreen
from tqctl.tui.screens.task_detail import TaskDetailScreen
from tqctl.tui.screens.tasks import TasksScreen
from tqctl.tui.screens.workers import WorkersScreen
from tqctl.tui.widgets.header import NAV, Banner, ClusterHeader

ALIASES = {
    "ov": "overview",
    "o": "overview",
    "overview": "overview",
    "w": "workers",
    "workers": "workers",
    "worker": "workers",
    "qs": "queues",
    "queue": "queues",
    "queues": "queues",
    "t": "tasks",
    "tasks": "tasks",
    "f": "failures",
    "failures": "failures",
    "fail": "failures",
    "s": "scheduled",
    "sched": "scheduled",
    "scheduled": "scheduled",
    "beat": "scheduled",
    "dl": "dead",
    "dead": "dead",
    "a": "audit",
    "audit": "audit",
}
QUIT = {"q", "q!", "quit", "exit"}
# The help's "Everywhere" rows: (shown, Textual key name, what it does). Each fits one line of an
# 80-column terminal's help box, so no description wraps under the key column.
GLOBAL_KEYS = [
    (":", "colon", "command: a screen's name, a task ID, or q to quit"),
    ("/", "slash", "filter: regex, state: name: worker: queue:, !text excludes"),
    ("esc", "escape", "clear the filter, else back"),
    ("-", "minus", "previous screen"),
    ("?", "question_mark", "this help"),
    ("ctrl+p", "ctrl+p", "command palette"),
    ("ctrl+r", "ctrl+r", "poll the cluster now"),
    ("!", "exclamation_mark", "copy the equivalent tqctl command (OSC 52)"),
    ("ctrl+c", "ctrl+c", "quit"),
    ("ctrl+z", "ctrl+z", "suspend to the shell (fg to come back)"),
]


class TqctlApp(ActionsMixin, App[str | None]):
    CSS_PATH = "tqctl.tcss"
    TITLE = "tqctl"
    ENABLE_COMMAND_PALETTE = True
    MODES = {
        "overview": OverviewScreen,
        "workers": WorkersScreen,
        "queues": QueuesScreen,
        "tasks": TasksScreen,
        "failures": FailuresScreen,
        "scheduled": ScheduledScreen,
        "dead": DeadLettersScreen,
        "audit": AuditScreen,
    }
    BINDINGS = [
        Binding("ctrl+c", "quit", "quit", priority=True, show=False),
        Binding("ctrl+z", "suspend_process", show=False),
        Binding("colon", "command_line", "command", show=False),
        Binding("question_mark", "help", "help"),
        Binding("ctrl+r", "refresh", "refresh", show=False),
        Binding("minus", "go_back", "last view", show=False),
        *[Binding(key, f"go('{mode}')", label, show=False) for key, mode, label in NAV],
    ]

    def __init__(
        self,
        source: Any,
        *,
        read_only: bool = False,
        audit: AuditLog | None = None,
        owned: Any = None,
        clock: Callable[[], float] = time.time,
        max_tasks: int = 100_000,
        start: str = "overview",
        tick: float = 0.5,
        still: bool = False,
        ansi: bool = False,
    ) -> None:
        super().__init__(ansi_color=True if ansi else None)
        if self.no_color:  # NO_COLOR: greys in which no text fades into its background
            self._filters = [ReadableMonochrome() if isinstance(f, Monochrome) else f for f in self._filters]
        self.still = still  # no blinking or animation: reproducible screenshots
        if still:
            self.animation_level = "none"
        self.source = source
        self.read_only = read_only
        self.audit = audit or AuditLog(None)
        self.owned = owned
        self.model = ConsoleModel(clock=clock, max_tasks=max_tasks)
        self.start_mode = start
        self.tick = tick
        self.pending_actions = 0
        self.last_outcome: ActionDone | None = None
        self.first_paint: float | None = None
        self._mode_history: list[str] = []

    # -- start and stop ---------------------------------------------------------------------------
    def on_mount(self) -> None:
        if self.source.kind == "demo":
            self.source.load(self.model)
        else:
            self.run_worker(
                partial(self._feed, self.source.run_events),
                thread=True,
                group="feed",
                name="events",
                exit_on_error=False,
            )
            self.run_worker(
                partial(self._feed, self.source.run_snapshots),
                thread=True,
                group="feed",
                name="poll",
                exit_on_error=False,
            )
        self.switch_mode(self.start_mode if self.start_mode in self.MODES else "overview")
        self.set_interval(self.tick, self.refresh_screen)
        self.call_after_refresh(self._painted)

    def _painted(self) -> None:
        self.first_paint = time.monotonic()

    def _feed(self, loop: Callable[..., None]) -> None:
        worker = get_current_worker()
        loop(self.post_message, lambda: worker.is_cancelled)

    def on_unmount(self) -> None:
        self.workers.cancel_group(self, "feed")
        self.source.close()

    # -- the pipeline -----------------------------------------------------------------------------
    def on_events_batch(self, message: EventsBatch) -> None:
        self.model.apply_events(
            message.events, created=None if message.backfill else message.created, backfill=message.backfill
        )

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self.model.apply_snapshot(message.snapshot)

    def on_feed_status(self, message: FeedStatus) -> None:
        if message.history_missing is not None:
            self.model.history_missing = message.history_missing or None
        self.model.set_connection(message.connected, message.error, message.retry_in, message.what)
        self.refresh_screen(force=True)

    def refresh_screen(self, force: bool = False) -> None:
        for screen in reversed(self.screen_stack):
            if isinstance(screen, ConsoleScreen):
                screen.refresh_view(force)
                return

    def paint_chrome(self, screen: Screen) -> None:
        model = self.model
        from tqctl.tui.views import worker_rows

        workers = worker_rows(model)
        headers = screen.query(ClusterHeader)
        if not headers:
            return  # not composed yet
        headers.first().render_header(
            url=self.source.masked_url,
            transport=self.source.transport,
            online=sum(1 for w in workers if w.online),
            total=len(workers),
            events_per_second=model.events_per_second(),
            read_only=self.read_only,
            current=getattr(screen, "NAV", ""),
            connected=model.connected,
            now=model.now(),
            paused=bool(getattr(screen, "paused", False)),
            down_what=model.down_what,
        )
        down = None if model.down_since is None else model.now() - model.down_since
        screen.query(Banner).first().show_state(model.connected, model.error, model.retry_in, down, model.down_what)

    # -- navigation -------------------------------------------------------------------------------
    def action_go(self, mode: str) -> None:
        if mode not in self.MODES:
            return
        if mode != self.current_mode:
            self._mode_history.append(self.current_mode)
            del self._mode_history[:-20]
            self.switch_mode(mode)
        # A screen's key shows that screen, not what was opened on it before (a mode keeps its
        # stack: ``:task ID``, then 1, then 4 showed the task again); ``-`` still goes back to it.
        while len(self.screen_stack) > 1:
            self.pop_screen()

    def go_back(self) -> None:
        if len(self.screen_stack) > 1:
            self.pop_screen()
        elif self._mode_history:
            self.switch_mode(self._mode_history.pop())

    def action_go_back(self) -> None:
        self.go_back()

    def open_task(self, task_id: str) -> None:
        self.push_screen(TaskDetailScreen(task_id))

    def action_refresh(self) -> None:
        self.source.request_snapshot()
        self.notify("polling the cluster now", timeout=1.5)

    def action_command_line(self) -> None:
        names = sorted(set(ALIASES.values())) + ["task ", "quit", "help"]
        self.push_screen(CommandScreen(names), callback=self.run_command)

    def run_command(self, text: str | None) -> None:
        if not text:
            return
        word, _, rest = text.strip().partition(" ")
        word = word.lower()
        if word in QUIT:
            self.call_later(self.action_quit)  # a coroutine: called bare, it never ran
        elif word in ("help", "h"):
            self.action_help()
        elif word == "task" and not rest.strip():
            self.notify("usage: :task ID (a task ID, or its first characters)", severity="warning")
        elif word == "task":
            found = self.find_task(rest.strip())
            if found:
                self.action_go("tasks")
                self.open_task(found)
            else:
                self.notify(f"no task {rest.strip()!r} in view", severity="warning")
        elif word in ALIASES:
            self.action_go(ALIASES[word])
            if rest.strip().startswith("/"):
                screen = self.screen
                if isinstance(screen, ConsoleScreen):
                    screen.set_filter(rest.strip()[1:])
        else:
            self.notify(
                f"unknown command {word!r}: try overview, workers, queues, tasks, failures, scheduled,"
                " dead, audit, task ID, q",
                severity="warning",
            )

    def find_task(self, prefix: str) -> str | None:
        if self.model.state.task(prefix):
            return prefix
        for task in self.model.state.tasks(limit=100_000):
            if task.uuid.startswith(prefix):
                return task.uuid
        return None

    def action_help(self) -> None:
        screen = self.screen
        here: list[tuple[str, str]] = []
        own: dict[str, str] = {}  # a key this screen binds → what it does here
        if isinstance(screen, ConsoleScreen):
            keys: dict[str, list[str]] = {}  # action → its keys, this screen's own bindings first
            words: dict[str, str] = {}
            for cls in type(screen).__mro__:
                if not (isinstance(cls, type) and issubclass(cls, ConsoleScreen)) or "BINDINGS" not in cls.__dict__:
                    continue
                for b in cls.__dict__["BINDINGS"]:
                    if not isinstance(b, Binding) or b.action in ("back", "copy_command", "filter"):
                        continue  # listed under "Everywhere"
                    keys.setdefault(b.action, []).append(b.key_display or self.get_key_display(b))
                    words.setdefault(b.action, b.description or b.action)
                    own.setdefault(b.key, b.description or b.action)
            for action, shown in keys.items():
                hidden = self.read_only and action in screen.WRITE_ACTIONS
                why = screen.unavailable(action)
                note = " (read-only: off)" if hidden else (f" ({why})" if why else "")
                here.append((" ".join(dict.fromkeys(shown)), words[action] + note))
        screens = [(key, f"{label} screen") for key, _, label in NAV]
        # A global key this screen binds to an action of its own does that here (Workers: - shrinks).
        global_keys = [
            (shown, text + (f" (here: {own[key]})" if key in own else "")) for shown, key, text in GLOBAL_KEYS
        ]
        tables = [
            ("↑ ↓ j k", "move"),
            ("PgUp PgDn", "page"),
            ("Home End g G", "first, last row"),
            ("enter", "open the row"),
        ]
        title = getattr(screen, "TITLE", None) or self.current_mode
        self.push_screen(
            HelpScreen(
                f"Keys · {title}" + (" · read-only" if self.read_only else ""),
                [("This screen", here), ("Screens", screens), ("Everywhere", global_keys), ("Tables", tables)],
            )
        )

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for key, mode, label in NAV:
            yield SystemCommand(f"Go to {label}", f"screen {key} · :{mode}", partial(self.action_go, mode))
        yield SystemCommand("Refresh now", "poll the cluster (ctrl+r)", self.action_refresh)
        yield SystemCommand("Help", "keys of this screen (?)", self.action_help)
        if isinstance(screen, ConsoleScreen):
            for active in screen.active_bindings.values():
                b = active.binding
                if active.node is screen and b.description and active.enabled:
                    yield SystemCommand(
                        _describe(b.description).capitalize(),
                        f"key {b.key_display or b.key}",
                        partial(screen.run_action, b.action),
                    )
        yield SystemCommand("Quit", "leave the console (ctrl+c)", self.action_quit)

    # -- leaving ----------------------------------------------------------------------------------
    async def action_quit(self) -> None:
        if isinstance(self.screen, QuitScreen):
            self.screen.dismiss("stop")
            return
        owned = self.owned
        if owned is not None and not owned.detach and owned.alive():
            self.push_screen(QuitScreen(owned.describe()), callback=self._quit_answer)
            return
        self.exit(None)

    def _quit_answer(self, answer: str | None) -> None:
        if answer in ("stop", "leave"):
            self.exit(answer)


def _describe(text: str) -> str:
    """Footer labels carry their key (``/filter``); help shows the words only."""
    return text.lstrip("/!:?+-").strip() or text
