"""The ``?`` help on every screen, as an operator at an 80-column terminal reads it."""

from __future__ import annotations

import asyncio

from rich.cells import cell_len

from tests.tui.harness import make_demo_app
from tqctl.tui.screens.dialogs import HelpScreen
from tqctl.tui.widgets.header import NAV

HELP_WIDTH = 76  # the help box's text width in an 80-column terminal (border and padding off)


def help_on(key: str) -> HelpScreen:
    app = make_demo_app()

    async def main() -> HelpScreen:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press(key)
            await pilot.pause()
            await pilot.press("question_mark")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            return app.screen

    return asyncio.run(main())


def test_no_help_line_wraps_at_80_columns() -> None:
    for key, _, label in NAV:
        body = help_on(key).body
        long = [line for line in body.splitlines() if cell_len(line) > HELP_WIDTH]
        assert not long, f"{label}: help lines wider than {HELP_WIDTH} columns: {long}"


def test_a_global_key_a_screen_takes_over_says_what_it_does_there() -> None:
    workers = help_on("2").body
    assert "previous screen (here: shrink)" in workers
    tasks = help_on("4").body
    assert "previous screen\n" in tasks and "(here:" not in tasks


def test_the_tables_keys_name_every_key_that_goes_to_the_first_or_last_row() -> None:
    assert "Home End g G first, last row" in help_on("4").body


def test_the_filter_line_names_every_field_the_filter_takes() -> None:
    body = help_on("4").body
    line = next(line for line in body.splitlines() if line.strip().startswith("/ "))
    assert all(f in line for f in ("state:", "name:", "worker:", "queue:", "!text")), line


def test_enter_on_a_task_says_where_it_opens_something() -> None:
    """On a task's screen enter opens a task picked in the Family tab and does nothing elsewhere:
    help said only "open"."""
    app = make_demo_app()

    async def main() -> str:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("4")
            await pilot.pause()
            await pilot.press("enter")
            await pilot.pause()
            await pilot.press("question_mark")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            return app.screen.body

    body = asyncio.run(main())
    line = next(line for line in body.splitlines() if line.strip().startswith("⏎"))
    assert "Family" in line, line
