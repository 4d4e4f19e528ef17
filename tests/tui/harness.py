"""Builds the demo console and drives it to each named scene (Posting's harness idea).

Used by the snapshot tests and by ``tests/make_screenshots.py``, so the pictures in
``screenshots/`` are exactly what the snapshot tests compare.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from textual.pilot import Pilot

from tqctl.tui.app import TqctlApp
from tqctl.tui.audit import AuditLog
from tqctl.tui.demo import AUDIT, DemoSource, demo_clock

SIZES = ((80, 24), (120, 40))


def make_demo_app(read_only: bool = False, start: str = "overview") -> TqctlApp:
    app = TqctlApp(
        DemoSource(), read_only=read_only, audit=AuditLog(None, list(AUDIT)), clock=demo_clock, start=start, still=True
    )
    return app


async def settle(pilot: Pilot) -> None:
    """Let thread workers finish and every message and refresh land."""
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
    pilot.app.refresh_screen(force=True)
    await pilot.pause()


def latest_failure_id(app: TqctlApp) -> str:
    failures = sorted(app.source.rec.failures, key=lambda f: -f["finished"])
    return failures[0]["id"]


def family_member_id(app: TqctlApp) -> str:
    return next(
        e["uuid"]
        for e in app.source.rec.events
        if e["type"] == "task-received" and e.get("name") == "shop.send_receipt" and e.get("parent_id")
    )


async def _keys(pilot: Pilot, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settle(pilot)


async def _detail(pilot: Pilot) -> None:
    pilot.app.action_go("tasks")
    await settle(pilot)
    pilot.app.open_task(latest_failure_id(pilot.app))
    await settle(pilot)


async def _detail_tab(pilot: Pilot, tab: str, task: Callable[[TqctlApp], str]) -> None:
    pilot.app.action_go("tasks")
    await settle(pilot)
    pilot.app.open_task(task(pilot.app))
    await settle(pilot)
    pilot.app.screen.query_one("#tabs").active = tab
    await settle(pilot)


async def _revoke_queued(pilot: Pilot) -> None:
    await _keys(pilot, "4")
    screen = pilot.app.screen
    queued = next(k for k in screen.table.row_keys if pilot.app.model.state.task(k).state == "RECEIVED")
    screen.table.select_key(queued)
    await _keys(pilot, "ctrl+d")


async def _broker_lost(pilot: Pilot) -> None:
    await _keys(pilot, "4")
    pilot.app.model.set_connection(False, "cannot reach redis://cache.shop.internal:6379/0: Connection refused", 4.0)
    await settle(pilot)


async def _command(pilot: Pilot) -> None:
    await _keys(pilot, "colon", *"tas")


Scene = Callable[[Pilot], Awaitable[None]]
SCENES: dict[str, Scene] = {
    "overview": lambda p: settle(p),
    "workers": lambda p: _keys(p, "2"),
    "queues": lambda p: _keys(p, "3"),
    "queue_peek": lambda p: _keys(p, "3", "enter"),
    "tasks": lambda p: _keys(p, "4"),
    "tasks_failed_filter": lambda p: _keys(p, "4", "s"),
    "task_detail": _detail,
    "task_traceback": lambda p: _detail_tab(p, "result", latest_failure_id),
    "task_family": lambda p: _detail_tab(p, "family", family_member_id),
    "failures": lambda p: _keys(p, "5"),
    "failure_group": lambda p: _keys(p, "5", "enter"),
    "scheduled": lambda p: _keys(p, "6"),
    "dead_letters": lambda p: _keys(p, "7"),
    "audit": lambda p: _keys(p, "8"),
    "help": lambda p: _keys(p, "4", "question_mark"),
    "confirm_purge": lambda p: _keys(p, "3", "P"),
    "confirm_shutdown": lambda p: _keys(p, "2", "ctrl+d"),
    "confirm_revoke": _revoke_queued,
    "command": _command,
    "broker_lost": _broker_lost,
}


def normalise_svg(svg: str) -> str:
    """Drop what changes between runs without changing the picture (generated ids)."""
    svg = re.sub(r"terminal-\d+", "terminal", svg)
    return re.sub(r"[ \t]+\n", "\n", svg)


def screen_text(app: TqctlApp) -> str:
    """The screen as plain text, one line per terminal row (what a user reads, without styles)."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system=None,
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return "\n".join(line.rstrip() for line in console.export_text(styles=False).splitlines()) + "\n"
