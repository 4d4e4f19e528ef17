"""Console habits against a real cluster: number keys and :commands, / filter, ? help, esc back,
! copy (OSC 52), read-only refusals, the audit log and its screen, ctrl+p, ctrl+c, and the banner
shown while the broker is gone (then the reconnect)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.command import CommandPalette
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from engine.bundled import start_private
from tests.tui.conftest import (
    audit_lines,
    cell,
    drive,
    live_app,
    outcome,
    press,
    row_text,
    shown_rows,
    texts,
    wait_for,
    wait_screen,
)
from tqctl.tui.screens.audit import AuditScreen
from tqctl.tui.screens.dialogs import CommandScreen, ConfirmScreen, HelpScreen, QuitScreen, TextScreen
from tqctl.tui.screens.task_detail import TaskDetailScreen
from tqctl.tui.screens.tasks import TasksScreen
from tqctl.tui.screens.workers import WorkersScreen
from tqctl.tui.widgets.header import Banner, ClusterHeader

# Every test here runs on Redis and on RabbitMQ (history, failures and revokes on the Redis backend).
pytestmark = [pytest.mark.integration, pytest.mark.amqp_too]


def footer_keys(screen) -> list[str]:  # noqa: ANN001
    return [k.description for k in screen.query_one(Footer).query(FooterKey)]


def header_text(app) -> str:  # noqa: ANN001
    return str(app.screen.query_one(ClusterHeader).render())


async def command(pilot, text: str) -> None:  # noqa: ANN001
    await press(pilot, "colon")
    await wait_screen(pilot, CommandScreen)
    await press(pilot, *text, "enter")


def test_navigation_filter_help_copy_and_commands(broker_url, start_worker, shop, state_dir):
    start_worker("-c", "2", "-P", "threads")
    app = live_app(broker_url, state_dir)
    ok = [shop.add.delay(i, 1).id for i in range(3)]
    bad = shop.fail.delay("boom").id
    written: list[str] = []

    async def scenario(pilot):
        original = app._driver.write
        app._driver.write = lambda data: (written.append(data), original(data))[1]
        assert "overview" == app.current_mode and "Overview" in header_text(app)
        await wait_for(pilot, lambda: all(app.model.state.task(i) for i in [*ok, bad]), "the four tasks")
        for key, mode in zip(
            "12345678",
            ("overview", "workers", "queues", "tasks", "failures", "scheduled", "dead", "audit"),
            strict=True,
        ):
            await press(pilot, key)
            assert app.current_mode == mode
        await command(pilot, "workers")
        assert app.current_mode == "workers" and isinstance(app.screen, WorkersScreen)
        await command(pilot, "t")
        tasks = await wait_screen(pilot, TasksScreen)
        await wait_for(pilot, lambda: set(ok + [bad]) <= set(tasks.table.row_keys), "every task listed")

        # / filters the table (any column, regex); esc clears it, a second esc goes back
        await press(pilot, "slash", *"boom", "enter")
        assert tasks.table.row_keys == [bad] and "boom" in row_text(tasks.table, bad)
        assert "/boom" in str(tasks.query_one("#status").render())
        await press(pilot, "escape")
        assert set(ok) <= set(tasks.table.row_keys)
        await command(pilot, "tasks /state:failure")
        assert tasks.table.row_keys == [bad]
        await press(pilot, "escape")

        # ! copies the equivalent command through OSC 52
        tasks.table.select_key(ok[0])
        await press(pilot, "exclamation_mark")
        assert app.clipboard == f"tqctl task {ok[0]}"
        assert any(w.startswith("\x1b]52;c;") for w in written)
        assert any(n.startswith("copied (OSC 52)") for n in app.seen_notes)

        # ? lists this screen's keys
        await press(pilot, "question_mark")
        help_screen = await wait_screen(pilot, HelpScreen)
        assert "Keys · Tasks" in help_screen.title_
        for words in ("open", "revoke", "terminate", "edit+retry", "pause", "copy the equivalent tqctl command"):
            assert words in help_screen.body
        await press(pilot, "escape")

        # :task PREFIX opens the detail; esc goes back to the table, then to the previous screen
        await command(pilot, f"task {bad[:8]}")
        detail = await wait_screen(pilot, TaskDetailScreen)
        assert detail.task_id == bad
        await press(pilot, "escape")
        assert app.screen is tasks
        await press(pilot, "escape")
        assert app.current_mode == "workers"
        await command(pilot, "nonsense")
        assert any("unknown command 'nonsense'" in n for n in app.seen_notes)

        await press(pilot, "ctrl+p")
        await wait_screen(pilot, CommandPalette)
        await press(pilot, "escape")

        await press(pilot, "ctrl+c")
        await wait_for(pilot, lambda: not app.is_running, "ctrl+c to quit")

    drive(app, scenario)
    assert app.return_code == 0


def test_read_only_refuses_write_keys_with_a_reason(broker_url, start_worker, shop, state_dir):
    start_worker("-c", "1")
    app = live_app(broker_url, state_dir, read_only=True)
    task = shop.add.delay(1, 1).id

    async def scenario(pilot):
        assert header_text(app).splitlines()[0].rstrip().endswith("RO")
        await press(pilot, "2")
        workers = await wait_screen(pilot, WorkersScreen)
        key = await wait_for(pilot, lambda: workers.table.row_keys and workers.table.row_keys[0], "the worker")
        await wait_for(pilot, lambda: cell(workers.table, key, "conc") == "1", "CONC 1")
        assert "grow" not in footer_keys(workers) and "shutdown" not in footer_keys(workers)
        await press(pilot, "plus")
        assert any("read-only" in n and "grow" in n for n in app.seen_notes), app.seen_notes
        await press(pilot, "ctrl+d")
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.pause(1.0)
        assert cell(workers.table, key, "conc") == "1"

        await press(pilot, "4")
        tasks = await wait_screen(pilot, TasksScreen)
        await wait_for(pilot, lambda: tasks.table.select_key(task), "the task")
        await press(pilot, "r", "ctrl+d")
        assert sum("read-only" in n for n in app.seen_notes) >= 3
        assert not isinstance(app.screen, ConfirmScreen) and app.last_outcome is None
        await press(pilot, "question_mark")
        help_screen = await wait_screen(pilot, HelpScreen)
        assert "read-only" in help_screen.title_ and "revoke (read-only: off)" in help_screen.body

    drive(app, scenario)
    assert audit_lines(state_dir) == []


def test_actions_are_audited_and_shown_on_the_audit_screen(broker_url, start_worker, state_dir):
    start_worker("-c", "1")
    app = live_app(broker_url, state_dir)

    async def scenario(pilot):
        await press(pilot, "2")
        workers = await wait_screen(pilot, WorkersScreen)
        key = await wait_for(pilot, lambda: workers.table.row_keys and workers.table.row_keys[0], "the worker")
        await press(pilot, "plus")
        await outcome(pilot, "pool_grow")
        await command(pilot, "audit")
        audit = await wait_screen(pilot, AuditScreen)
        await wait_for(pilot, lambda: audit.table.row_keys, "the audit row", show=lambda: shown_rows(audit.table))
        row = audit.table.row_keys[0]
        assert cell(audit.table, row, "action") == "pool_grow" and cell(audit.table, row, "ok") == "✓"
        assert cell(audit.table, row, "target") == key
        assert str(state_dir / "audit.jsonl") in str(audit.query_one("#status").render())
        await press(pilot, "enter")
        shown = await wait_screen(pilot, TextScreen)
        entry = json.loads(shown.body)
        assert entry["replies"] == [{key: {"ok": "pool will grow"}}] or key in json.dumps(entry["replies"])
        await press(pilot, "escape", "exclamation_mark")
        assert app.clipboard == f"tqctl control pool-grow 1 -d {key}"

    drive(app, scenario)
    [line] = audit_lines(state_dir)
    assert set(line) >= {"time", "user", "action", "target", "ok", "summary", "replies", "command", "scope"}


def test_quit_asks_to_stop_what_tqctl_up_started(broker_url, state_dir):
    class Owned:
        detach = False

        def alive(self) -> bool:
            return True

        def describe(self) -> str:
            return "2 workers and beat"

    app = live_app(broker_url, state_dir, owned=Owned())

    async def scenario(pilot):
        await press(pilot, "ctrl+c")
        quit_screen = await wait_screen(pilot, QuitScreen)
        assert "tqctl up started 2 workers and beat" in texts(quit_screen)
        await press(pilot, "escape")  # stay
        assert not isinstance(app.screen, QuitScreen) and app.is_running
        await press(pilot, "ctrl+c")
        await wait_screen(pilot, QuitScreen)
        await press(pilot, "ctrl+c")  # a second ctrl+c: stop them and quit
        await wait_for(pilot, lambda: not app.is_running, "the console to close")

    drive(app, scenario)
    assert app.return_value == "stop"


# Redis-only (no ``transport``): it stops and restarts its own private server.
def test_lost_broker_shows_a_banner_then_reconnects(tmp_path: Path, state_dir):
    server = start_private(tmp_path / "own-server")
    app = live_app(server.url, state_dir)

    async def scenario(pilot):
        nonlocal server
        banner = app.screen.query_one(Banner)
        await wait_for(pilot, lambda: app.model.snapshot is not None, "the first poll")
        assert not banner.has_class("-shown") and "broker down" not in header_text(app)
        server.stop()
        await wait_for(pilot, lambda: app.screen.query_one(Banner).has_class("-shown"), "the banner")
        text = str(app.screen.query_one(Banner).render())
        assert "broker unreachable" in text and "reconnecting" in text
        assert "✗ broker down" in header_text(app)
        await press(pilot, "4")  # the console still answers keys while the broker is gone
        assert app.current_mode == "tasks"
        server = start_private(tmp_path / "own-server")
        await wait_for(pilot, lambda: not app.screen.query_one(Banner).has_class("-shown"), "the reconnect", timeout=30)
        assert "broker down" not in header_text(app)

    try:
        drive(app, scenario)
    finally:
        server.stop()
