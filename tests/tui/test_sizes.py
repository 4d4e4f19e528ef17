"""The console in terminals smaller and larger than 80x24 (the recorded demo, no server): the header
keeps its two lines and every screen tab at 60 columns, and nothing runs past the right edge; the
Audit screen follows the file other consoles write too."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.tui.conftest import cell_text
from tests.tui.harness import make_demo_app, screen_text
from tqctl.tui.app import TqctlApp
from tqctl.tui.audit import AuditLog
from tqctl.tui.demo import DemoSource, demo_clock
from tqctl.tui.screens.audit import AuditScreen
from tqctl.tui.widgets.header import NAV


def screen_at(size: tuple[int, int], key: str = "1") -> list[str]:
    app = make_demo_app()

    async def main() -> str:
        async with app.run_test(size=size) as pilot:
            await pilot.press(key)
            await pilot.pause()
            app.refresh_screen(force=True)
            await pilot.pause()
            return screen_text(app)

    return asyncio.run(main()).splitlines()


@pytest.mark.parametrize("size", [(60, 20), (70, 24), (80, 24), (132, 43), (220, 60)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_header_is_two_lines_with_every_tab(size: tuple[int, int]) -> None:
    lines = screen_at(size, "4")
    # At 60 columns the first line wrapped: its end (the clock and RW) took the tabs' line.
    assert lines[0].lstrip().startswith("tqctl") and lines[0].rstrip().endswith("RW"), lines[:2]
    assert "DEMO" in lines[0]  # what kind of cluster this is never gives way
    assert all(f"{key} " in lines[1] for key, _, _ in NAV), lines[1]
    assert lines[1].rstrip().endswith("Audit"), lines[1]
    assert "Tasks" in lines[2], lines[2]  # the screen's own status line comes right after
    assert all(len(line) <= size[0] for line in lines)


def test_the_audit_screen_shows_what_another_console_appended(tmp_path: Path) -> None:
    """Two consoles on one machine share ``audit.jsonl``: one's actions show on the other's Audit
    screen. It reloaded only after its own actions, and said "0 actions" with the file full."""
    path = tmp_path / "audit.jsonl"
    app = TqctlApp(DemoSource(), audit=AuditLog(path), clock=demo_clock, start="audit", still=True, tick=0.1)
    other = AuditLog(path)  # the other console

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            assert isinstance(screen, AuditScreen)
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert screen.table.row_keys == []
            other.append("pool_grow", "w1@host", ok=True, summary="1 ok")
            for _ in range(100):
                if screen.table.row_keys:
                    break
                await pilot.pause(0.05)
            assert screen.table.row_keys, "the other console's action never showed"
            assert [cell_text(c) for c in screen.table.get_row(screen.table.row_keys[0])][3] == "pool_grow"

    asyncio.run(main())


def shown_tasks(size: tuple[int, int], names: list[str]) -> tuple[list[str], int]:
    """The TASK cells a Tasks-like table shows at ``size``, and the width left to DETAIL."""
    from textual.app import App, ComposeResult

    from tqctl.tui.screens.tasks import COLUMNS
    from tqctl.tui.widgets.table import ConsoleTable

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield ConsoleTable(COLUMNS, id="t", marks=True)

    app = One()
    rows = [
        (str(i), ["✓ SUCCESS", name, "7198ae68", "0s", "w1@host", "5ms", "→ {'order': 9435}"])
        for i, name in enumerate(names)
    ]

    async def main() -> tuple[list[str], int]:
        async with app.run_test(size=size) as pilot:
            table = app.query_one(ConsoleTable)
            table.set_rows(rows)
            await pilot.pause()
            widths = {c.key: c.width for c in table._shown}
            return [cell_text(table.get_cell(str(i), "name")) for i in range(len(names))], widths.get("detail", 0)

    return asyncio.run(main())


NAMES = ["tqctl.examples.shop.process_order", "tqctl.examples.shop.ship", "tqctl.examples.shop.new_orders"]


def test_a_wide_terminal_shows_task_names_whole() -> None:
    # At 132 columns "…les.shop.new_orders" was cut to 20 while DETAIL had 70 columns to spare.
    for size in ((132, 43), (220, 60)):
        names, detail = shown_tasks(size, NAMES)
        assert names == NAMES, size
        assert detail >= 30, size


def test_at_80_columns_the_columns_stay_as_they_were() -> None:
    names, detail = shown_tasks((80, 24), NAMES)
    assert names[0] == "…" + NAMES[0][-19:] and detail == 10


def test_the_broker_banner_keeps_to_three_lines_and_says_first_what_it_means() -> None:
    """What a socket broker's error reads like: its path three times. At 60x20 the banner took 6
    of the 20 lines, "reconnecting in" at its very end."""
    path = "/tmp/tmp.OQIxuZUP3H/redis.sock"
    error = f"cannot reach broker at {path} (redis+socket://{path}): Error 2 connecting to {path}. No such file"
    app = make_demo_app(start="tasks")

    async def main() -> list[str]:
        async with app.run_test(size=(60, 20)) as pilot:
            app.model.set_connection(False, error, 4.0)
            app.refresh_screen(force=True)
            await pilot.pause()
            return screen_text(app).splitlines()

    lines = asyncio.run(main())
    status = next(i for i, line in enumerate(lines) if line.lstrip().startswith("Tasks "))
    banner = " ".join(line.strip() for line in lines[2:status])
    assert status <= 5, lines[:status]
    assert "reconnecting in 4s · showing data from before" in banner, banner


def test_the_longest_dead_letter_reason_shows_whole_at_80_columns() -> None:
    """ "✗ result_not_stored" was cut to "✗ result_not_st…", "✗ content_disallowed" to "✗ content_disal…"."""
    from textual.app import App, ComposeResult

    from tqctl.tui.screens.dead import COLUMNS
    from tqctl.tui.widgets.table import ConsoleTable

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield ConsoleTable(COLUMNS, id="t", marks=True)

    app = One()
    reasons = ["✗ content_disallowed", "✗ result_not_stored", "✗ internal_error", "✗ unknown_task"]
    cells = ["13m", "", "celery", "shop.refund", "f82bafe7", "the task ran but its outcome…", "1b14ea86", "w1@h"]

    async def main() -> list[str]:
        async with app.run_test(size=(80, 24)) as pilot:
            table = app.query_one(ConsoleTable)
            table.set_rows([(r, [cells[0], r, *cells[2:]]) for r in reasons])
            await pilot.pause()
            return [cell_text(table.get_cell(r, "reason")) for r in reasons]

    assert asyncio.run(main()) == reasons


def test_a_table_too_wide_for_the_terminal_cuts_with_an_ellipsis() -> None:
    """Audit at 60 columns: its always-shown columns need 69, so RESULT ran off the screen's edge
    mid-word ("no stored messag") with no sign that more was there."""
    from tqctl.tui.demo import AUDIT

    lines = screen_at((60, 20), "8")
    rows = [line.rstrip() for line in lines if line.lstrip().startswith("2027-")]
    assert len(rows) == len(AUDIT), lines
    for row, entry in zip(rows, reversed(AUDIT), strict=True):
        assert entry["summary"] in row or row.endswith("…"), row
