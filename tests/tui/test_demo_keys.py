"""Keys on the recorded demo cluster (no server): what an operator sees after each key, at the sizes
the console promises (80x24 and up). The demo adapter records every call instead of sending it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.tui.conftest import cell, press, record_notes, wait_for
from tests.tui.harness import latest_failure_id, make_demo_app, screen_text, settle
from tqctl.tui.app import TqctlApp
from tqctl.tui.screens.dialogs import ConfirmScreen, TextScreen
from tqctl.tui.screens.overview import OverviewScreen
from tqctl.tui.screens.task_detail import TaskDetailScreen
from tqctl.tui.screens.tasks import TasksScreen
from tqctl.tui.views import worker_rows


def run_demo(scenario: Callable[[Pilot, TqctlApp], Awaitable[Any]], size: tuple[int, int] = (120, 40)) -> Any:
    """Drive a fresh demo console through ``scenario``; notifications land on ``app.seen_notes``."""
    app = make_demo_app()
    record_notes(app)

    async def main() -> Any:
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            return await asyncio.wait_for(scenario(pilot, app), 60)

    return asyncio.run(main())


def calls(app: TqctlApp, name: str) -> list[tuple[Any, ...]]:
    """What the demo adapter was asked to do (``name`` only)."""
    return [args for called, args in app.source.adapter.calls if called == name]


# -- 1. Tasks: r retries the marked rows, as ctrl+d revokes them -------------------------------------
def test_retry_acts_on_the_marked_rows_after_a_confirmation() -> None:
    async def scenario(pilot: Pilot, app: TqctlApp) -> None:
        await press(pilot, "4", "Z")  # paused: the rows stay put while marking
        screen = app.screen
        assert isinstance(screen, TasksScreen)
        first, second, third = screen.table.row_keys[:3]
        await press(pilot, "space", "space")  # marks the top two rows; the cursor is on the third
        assert screen.table.current_key == third
        await press(pilot, "r")
        confirm = await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen, "a confirmation")
        assert confirm.action_.title == "Retry 2 tasks"
        assert app.focused is confirm.query_one("#cancel")
        await press(pilot, "escape")  # cancelled: nothing sent
        assert calls(app, "retry") == []
        await press(pilot, "r")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation again")
        await press(pilot, "tab", "enter")
        await wait_for(pilot, lambda: app.last_outcome, "the retry")
        await settle(pilot)
        assert calls(app, "retry") == [(first,), (second,)]

    run_demo(scenario)


def test_retry_without_marks_sends_the_cursor_row_at_once() -> None:
    async def scenario(pilot: Pilot, app: TqctlApp) -> None:
        await press(pilot, "4", "Z")
        screen = app.screen
        assert isinstance(screen, TasksScreen)
        await press(pilot, "down")
        picked = screen.table.current_key
        await press(pilot, "r")
        await wait_for(pilot, lambda: app.last_outcome, "the retry")
        assert calls(app, "retry") == [(picked,)]

    run_demo(scenario)


def test_edit_and_retry_refuses_several_marked_rows() -> None:
    async def scenario(pilot: Pilot, app: TqctlApp) -> None:
        await press(pilot, "4", "Z", "space", "space", "R")
        await settle(pilot)
        assert any("R edits one task; 2 are marked" in n for n in app.seen_notes), app.seen_notes
        assert calls(app, "retry_with") == [] and not isinstance(app.screen, ConfirmScreen)

    run_demo(scenario)


# -- 2. The / filter line shows what is typed, and says when a pattern is not a regex -----------------
def test_the_filter_line_shows_the_typed_text_above_the_footer() -> None:
    for size in ((80, 24), (160, 45)):

        async def scenario(pilot: Pilot, app: TqctlApp) -> list[str]:
            await press(pilot, "4", "slash", *"name:shipX")
            typing = screen_text(app).splitlines()
            await press(pilot, "enter")  # the filter stays on, and so does its line
            return [typing[-2], screen_text(app).splitlines()[-2]]

        typing, kept = run_demo(scenario, size)
        assert typing.strip() == "/name:shipX", f"{size}: the line above the footer reads {typing!r}"
        assert kept.strip() == "/name:shipX", f"{size}: after enter it reads {kept!r}"


def test_a_bad_regex_says_so_instead_of_silently_matching_nothing() -> None:
    async def scenario(pilot: Pilot, app: TqctlApp) -> str:
        await press(pilot, "4", "slash", *"[unclosed")
        return screen_text(app)

    text = run_demo(scenario, (80, 24))
    assert "✗ bad pattern '[unclosed': unterminated character set" in text, text


# -- 3. Workers: - (also "previous screen") asks before it shrinks a pool ------------------------------
def test_shrink_asks_first_so_a_back_reflex_changes_nothing() -> None:
    async def scenario(pilot: Pilot, app: TqctlApp) -> None:
        await press(pilot, "2", "3", "minus", "minus")  # back to Workers, then "back" again by habit
        confirm = await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen, "a question")
        assert confirm.action_.title == "Shrink the pool of 1 worker by 1"
        worker = app.screen_stack[-2].table.current_key
        assert confirm.action_.scope == (f"{worker}: from 8 processes to 7",)
        assert calls(app, "pool_shrink") == []
        await press(pilot, "escape")
        assert not isinstance(app.screen, ConfirmScreen) and calls(app, "pool_shrink") == []
        await press(pilot, "minus")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question again")
        await press(pilot, "enter")  # enter confirms
        await wait_for(pilot, lambda: app.last_outcome, "the shrink")
        assert calls(app, "pool_shrink") == [([worker], {"n": 1})]

    run_demo(scenario)


# -- 4. Scheduled: an ETA that passed since the last read is "due", as a beat entry's is ---------------
def test_an_eta_just_passed_reads_due_not_late() -> None:
    async def scenario(pilot: Pilot, app: TqctlApp) -> tuple[str, str]:
        snap = app.model.snapshot
        assert snap is not None
        now = app.model.now()
        just_due = {"id": "e7a0due0-0000-4000-8000-000000000001", "name": "shop.retry_charge", "eta": now - 1}
        stuck = {"id": "e7a0late-0000-4000-8000-000000000002", "name": "shop.retry_charge", "eta": now - 9}
        app.model.apply_snapshot(replace(snap, taken_at=now - 3, delayed=(stuck, just_due, *snap.delayed)))
        await press(pilot, "6")
        await settle(pilot)
        table = app.screen.query_one("#eta")
        return cell(table, just_due["id"], "due"), cell(table, stuck["id"], "due")

    just_due, stuck = run_demo(scenario)
    assert just_due == "due"
    assert stuck == "9s late"  # already past when it was read: late indeed


# -- 5. Home/End go to the first and last row, as help says (and g/G) ----------------------------------
def test_home_and_end_go_to_the_first_and_last_row() -> None:
    async def scenario(pilot: Pilot, app: TqctlApp) -> list[tuple[int, int]]:
        seen = []
        for screen_key in ("4", "7"):
            await press(pilot, screen_key)
            table = app.screen.query_one("#table")
            await press(pilot, "down", "end")
            seen.append((table.cursor_row, table.row_count - 1))
            await press(pilot, "home")
            seen.append((table.cursor_row, 0))
        return seen

    for got, wanted in run_demo(scenario, (80, 24)):
        assert got == wanted


# -- 6. A screen's number shows that screen, not the task opened on it earlier ------------------------
def test_the_tasks_key_shows_the_table_after_a_task_was_opened_by_command() -> None:
    async def scenario(pilot: Pilot, app: TqctlApp) -> None:
        task_id = latest_failure_id(app)
        await press(pilot, "colon", *f"task {task_id[:8]}", "enter")
        detail = await wait_for(pilot, lambda: isinstance(app.screen, TaskDetailScreen) and app.screen, "the task")
        assert detail.task_id == task_id
        await press(pilot, "1", "4")
        assert isinstance(app.screen, TasksScreen), app.screen
        await press(pilot, "s")  # the Tasks keys work: state filter on failures
        assert app.screen.state_filter == "FAILURE"

    run_demo(scenario)


# -- 7. An action says it started the moment it starts, not only when the broker answers -------------
def test_a_confirmed_revoke_says_it_is_under_way_while_the_broker_has_not_answered() -> None:
    async def scenario(pilot: Pilot, app: TqctlApp) -> None:
        answer = threading.Event()
        adapter = app.source.adapter
        original = adapter.revoke

        def slow_revoke(*args: Any, **kwargs: Any) -> Any:  # a broker that has not answered yet
            answer.wait(30)
            return original(*args, **kwargs)

        adapter.revoke = slow_revoke
        await press(pilot, "4", "Z", "space", "space", "ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await press(pilot, "tab", "enter")
        try:
            await wait_for(pilot, lambda: "revoke: revoking 2 tasks…" in app.seen_notes, "the word that it started")
            assert app.last_outcome is None  # still waiting for the broker
        finally:
            answer.set()
        await wait_for(pilot, lambda: app.last_outcome, "the revoke")

    run_demo(scenario)


# -- 8. Task detail: a long task name gives way to the ID in the header --------------------------------
def test_the_task_header_keeps_the_id_when_the_name_is_long() -> None:
    task_id = "3f9c2a1e-7b44-4c1a-9d1e-0a0a0a0a0a77"

    async def scenario(pilot: Pilot, app: TqctlApp) -> str:
        now = app.model.now()
        received = {"type": "task-received", "uuid": task_id, "name": "tqctl.examples.shop.export_report"}
        app.model.apply_events([dict(received, hostname="w1@shop-01", timestamp=now, local_received=now, clock=1)])
        await press(pilot, "4")
        app.open_task(task_id)
        await settle(pilot)
        return screen_text(app).splitlines()[2]

    for size in ((80, 24), (60, 24)):
        head = run_demo(scenario, size)
        assert head.startswith(" ○ RECEIVED  ") and "shop.export_report  " in head, head
        assert head.endswith(task_id if size[0] == 80 else task_id[:8]), head


# -- 9. Dead letters: enter shows the raw message and a time a person reads; the ID is the letter's ---
def test_a_dead_letter_shows_its_raw_message_and_a_readable_time() -> None:
    async def scenario(pilot: Pilot, app: TqctlApp) -> tuple[str, str]:
        await press(pilot, "7")
        table = app.screen.query_one("#table")
        assert table.current_key == "dl-3"
        header = screen_text(app).splitlines()[3]
        await press(pilot, "enter")
        shown = await wait_for(pilot, lambda: isinstance(app.screen, TextScreen) and app.screen, "the letter")
        await wait_for(pilot, lambda: "raw message" in shown.body, "the raw message", show=lambda: shown.body)
        return header, shown.body

    header, body = run_demo(scenario, (80, 24))
    assert "DEAD ID" in header, header  # the column commands need, not the task id
    assert "time     2027-01-15 07:58:25 UTC (1m ago)" in body and "1796" not in body
    assert "id       dl-3 " in body  # the id the dialogs and `tqctl dead` use
    assert '"task": "shop.legacy_import"' in body  # the envelope, pretty
    assert "body (base64-decoded)" in body and "10502" in body


# -- 10. The demo says it is one: in the header at 80 columns, and in every action's answer -----------
def test_the_demo_header_says_demo_at_80_columns() -> None:
    async def scenario(pilot: Pilot, app: TqctlApp) -> str:
        return screen_text(app).splitlines()[0]

    line = run_demo(scenario, (80, 24))
    assert " DEMO " in line and line.rstrip().endswith("RW"), line


def test_demo_actions_say_nothing_was_changed() -> None:
    async def scenario(pilot: Pilot, app: TqctlApp) -> list[str]:
        await press(pilot, "3")
        app.screen.table.select_key("emails")
        await press(pilot, "P", *"emails", "enter")
        await wait_for(pilot, lambda: app.last_outcome, "the purge")
        app.last_outcome = None
        await press(pilot, "2", "plus")
        await wait_for(pilot, lambda: app.last_outcome, "the grow")
        return app.seen_notes

    notes = run_demo(scenario)
    answers = [n for n in notes if n.startswith(("purge ", "pool_grow "))]
    assert answers == [
        "purge (demo): demo: nothing was sent, nothing changed (tqctl purge emails --yes)",
        "pool_grow (demo): demo: nothing was sent, nothing changed (tqctl control pool-grow 1 -d celery@legacy-01)",
    ], notes


# -- 11. Small text ------------------------------------------------------------------------------------
def test_task_command_without_an_id_says_how_to_use_it() -> None:
    async def scenario(pilot: Pilot, app: TqctlApp) -> list[str]:
        await press(pilot, "colon", *"task", "enter")
        return app.seen_notes

    notes = run_demo(scenario)
    assert any("usage: :task ID" in n for n in notes) and not any("unknown command" in n for n in notes), notes


def test_overview_counts_one_process_in_the_singular() -> None:
    async def scenario(pilot: Pilot, app: TqctlApp) -> tuple[str, str]:
        one = replace(next(w for w in worker_rows(app.model) if w.online), current=1)
        screen = app.screen
        assert isinstance(screen, OverviewScreen)
        return screen._workers_line([one]).plain, screen._workers_line([one, one]).plain

    single, double = run_demo(scenario)
    assert " · 1 process · " in single and " · 2 processes · " in double


def test_the_marked_count_shows_at_80_columns_while_paused() -> None:
    async def scenario(pilot: Pilot, app: TqctlApp) -> str:
        await press(pilot, "4", "s", "Z", "space", "space")  # failures only, paused, two marked
        return screen_text(app).splitlines()[2]

    status = run_demo(scenario, (80, 24))
    assert "2 marked" in status and "FAILURE" in status, status


def test_a_capped_table_says_it_shows_the_newest_and_how_to_reach_the_rest() -> None:
    """The Tasks table keeps the newest 500 matches: "500 shown of 840" did not say which 500."""

    async def scenario(pilot: Pilot, app: TqctlApp) -> str:
        await press(pilot, "4")
        screen = app.screen
        assert isinstance(screen, TasksScreen)
        screen._matched = 840  # more matches than the table's cap
        return screen.status_line(500).plain

    status = run_demo(scenario)
    assert "newest 500 shown of 840 (/ narrows)" in status, status


def test_the_queues_status_explains_drain_only_when_its_column_is_there() -> None:
    """At 80 columns the DRAIN column gives way; the status line explained it anyway."""

    async def scenario(pilot: Pilot, app: TqctlApp) -> str:
        await press(pilot, "3")
        return screen_text(app)

    narrow, wide = run_demo(scenario, (80, 24)), run_demo(scenario, (160, 45))
    assert " DRAIN " not in narrow.splitlines()[3] and "DRAIN:" not in narrow, narrow
    assert " DRAIN " in wide.splitlines()[3] and "DRAIN: time to empty" in wide, wide


# -- 8. `:SCREEN /text` opens a screen not yet shown, filtered ---------------------------------------
def test_a_command_opens_a_screen_never_shown_before_with_its_filter() -> None:
    """`:tasks /refund` on a fresh console stopped it with a traceback (NoMatches: FilterBar), and
    exit 0: the filter went to the new screen before Textual had built it."""

    async def scenario(pilot: Pilot, app: TqctlApp) -> None:
        await press(pilot, "colon", *"tasks /refund", "enter")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, TasksScreen) and app.screen, "the Tasks screen")
        await settle(pilot)
        assert screen.filter_text == "refund"
        assert screen.query_one("#filter").value == "refund"
        names = [cell(screen.table, key, "name") for key in screen.table.row_keys]
        assert names and all("refund" in name for name in names), names
        await press(pilot, "colon", *"workers /up1", "enter")  # a second screen, also new
        workers = await wait_for(pilot, lambda: app.screen is not screen and app.screen, "the Workers screen")
        await settle(pilot)
        assert workers.filter_text == "up1" and workers.query_one("#filter").value == "up1"

    run_demo(scenario)


# -- 9. A console that stops on an error of its own says so in its exit code -------------------------
def test_a_console_that_stops_on_an_error_of_its_own_is_not_a_clean_exit() -> None:
    """Textual prints the error and returns: `tqctl` then exited 0, so a script or `tqctl up`
    took the crash for the operator quitting. Now it is a LaunchError (one line, exit 1; `up`
    stops what it started)."""
    from tqctl.tui.launch import LaunchError, ended

    app = make_demo_app()

    def bug() -> None:
        raise RuntimeError("a bug in a screen")

    async def crash(pilot: Pilot) -> None:
        await pilot.pause()
        pilot.app.call_later(bug)
        await pilot.pause(0.5)

    choice = app.run(headless=True, auto_pilot=crash)
    with pytest.raises(LaunchError, match="stopped on an internal error"):
        ended(app, choice)

    quitting = make_demo_app()

    async def quit_(pilot: Pilot) -> None:
        await press(pilot, "ctrl+c")

    assert ended(quitting, quitting.run(headless=True, auto_pilot=quit_)) is None
