"""Quitting the console while it repaints: a CI run once crashed with ``NoMatches`` because the
App's refresh timer fired while Textual was removing the task detail's widgets one by one.

Each case quits with the timer firing every half millisecond and a clock that moves on every
reading (so no screen skips the repaint as unchanged). Without the fix, 7 of these 9 tests failed.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tqctl.tui.app import TqctlApp
from tqctl.tui.audit import AuditLog
from tqctl.tui.demo import DemoSource
from tqctl.tui.screens.task_detail import TaskDetailScreen

QUITS = 5  # per screen: the race is likely, not certain, on any one quit


def quit_while_painting(mode: str, open_task: bool) -> None:
    ticks = itertools.count()
    app = TqctlApp(
        DemoSource(),
        audit=AuditLog(None),
        clock=lambda: 1_700_000_000 + next(ticks),
        start=mode,
        tick=0.0005,
        still=True,
    )

    async def main() -> None:
        async with app.run_test(size=(120, 40)):
            # asyncio.sleep, not pilot.pause: that waits for an idle app, slow at this tick.
            if open_task:
                newest = app.model.state.tasks(limit=1)
                app.push_screen(TaskDetailScreen(newest[0].uuid if newest else "no-such-task"))
            while not (app.screen.is_mounted and app.screen.query("Footer")):
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.02)  # a few repaints, then quit

    asyncio.run(main())  # run_test re-raises whatever crashed the app, here at the quit


@pytest.mark.parametrize("mode", sorted(TqctlApp.MODES))
def test_quitting_any_screen_while_it_repaints_never_crashes(mode: str) -> None:
    for _ in range(QUITS):
        quit_while_painting(mode, open_task=False)


def test_quitting_the_task_detail_while_it_repaints_never_crashes() -> None:
    for _ in range(QUITS):
        quit_while_painting("tasks", open_task=True)


@pytest.mark.parametrize("word", ["q", "quit"])
def test_the_command_line_quit_word_quits(word: str) -> None:
    """``:q`` once made a coroutine that never ran: the console stayed open."""
    app = TqctlApp(DemoSource(), audit=AuditLog(None), still=True)

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            app.run_command(word)
            for _ in range(100):
                if app.return_code is not None:
                    break
                await pilot.pause(0.02)

    asyncio.run(main())
    assert app.return_code == 0
