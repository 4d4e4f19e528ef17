"""Workers screen against real worker processes: grow, shrink, autoscale, add and cancel a consumer,
drain and shut down (confirmation with exact scope, focus on Cancel)."""

from __future__ import annotations

import pytest
from textual.widgets import Button

from tests.tui.conftest import (
    audit_lines,
    cell,
    drive,
    live_app,
    outcome,
    press,
    row_text,
    wait_for,
    wait_screen,
)
from tqctl.tui.screens.dialogs import ChoiceScreen, ConfirmScreen, PromptScreen
from tqctl.tui.screens.workers import WorkersScreen

# Every test here runs on Redis and on RabbitMQ (history, failures and revokes on the Redis backend).
pytestmark = [pytest.mark.integration, pytest.mark.amqp_too]


def worker_row(app, prefix: str) -> str | None:  # noqa: ANN001
    screen = app.screen
    if not isinstance(screen, WorkersScreen):
        return None
    return next((k for k in screen.table.row_keys if k.startswith(prefix)), None)


async def open_workers(pilot, app, name: str = "w1@"):  # noqa: ANN001, ANN201
    await press(pilot, "2")
    screen = await wait_screen(pilot, WorkersScreen)
    key = await wait_for(pilot, lambda: worker_row(app, name), "the worker's row")
    screen.table.select_key(key)
    await pilot.pause()
    return screen, key


def test_grow_shrink_autoscale_and_consumers(broker_url, start_worker, state_dir):
    start_worker("-c", "1")  # prefork: the pool really grows
    app = live_app(broker_url, state_dir)

    async def scenario(pilot):
        screen, key = await open_workers(pilot, app)
        table = screen.table
        await wait_for(
            pilot,
            lambda: "● online" in row_text(table, key) and " prefork " in row_text(table, key),
            "the worker online with its pool",
            show=lambda: row_text(table, key),
        )
        conc = lambda: cell(table, key, "conc")  # noqa: E731
        await wait_for(pilot, lambda: conc() == "1", "concurrency 1")

        await press(pilot, "plus")  # grow: no confirmation (nothing is destroyed)
        done = await outcome(pilot, "pool_grow")
        assert "1 ok" in done.outcome.summary
        await wait_for(pilot, lambda: conc() == "2", "CONC 2 after grow")

        app.last_outcome = None
        await press(pilot, "minus")  # shrink asks first ("-" is also "previous screen"); enter confirms
        confirm = await wait_screen(pilot, ConfirmScreen)
        assert confirm.action_.scope == (f"{key}: from 2 processes to 1",)
        await press(pilot, "enter")
        await outcome(pilot, "pool_shrink")
        await wait_for(pilot, lambda: conc() == "1", "CONC 1 after shrink")

        app.last_outcome = None
        await press(pilot, "a")
        prompt = await wait_screen(pilot, PromptScreen)
        prompt.query_one("#value").value = ""
        await press(pilot, *"3,1", "enter")
        await outcome(pilot, "autoscale")
        await wait_for(pilot, lambda: conc().endswith("/1/3"), "CONC current/1/3 under autoscale")

        app.last_outcome = None
        await press(pilot, "o")
        await wait_screen(pilot, PromptScreen)
        await press(pilot, *"reports", "enter")
        await outcome(pilot, "add_consumer")
        await wait_for(pilot, lambda: "reports" in row_text(table, key), "the new queue in QUEUES")

        app.last_outcome = None
        await press(pilot, "O")
        choice = await wait_screen(pilot, ChoiceScreen)
        labels = [str(choice.query_one("OptionList").get_option_at_index(i).prompt) for i in range(2)]
        await press(pilot, "down" if labels[1].startswith("reports") else "up", "enter")
        confirm = await wait_screen(pilot, ConfirmScreen)
        assert confirm.action_.verb == "cancel_consumer"
        assert "stop taking messages from 'reports'" in confirm.action_.scope[0]
        assert app.focused is confirm.query_one("#cancel", Button)
        await press(pilot, "tab", "enter")
        await outcome(pilot, "cancel_consumer")
        await wait_for(pilot, lambda: "reports" not in row_text(table, key), "the queue gone from QUEUES")

    drive(app, scenario)
    verbs = [e["action"] for e in audit_lines(state_dir)]
    assert verbs == ["pool_grow", "pool_shrink", "autoscale", "add_consumer", "cancel_consumer"]
    assert all(e["ok"] and e["user"] and e["time"] and e["replies"] for e in audit_lines(state_dir))


def test_drain_and_shutdown_confirm_their_scope_with_focus_on_cancel(broker_url, start_worker, state_dir):
    start_worker("-c", "1", "-P", "threads", name="w1")
    second = start_worker("-c", "1", "-P", "threads", "-Q", "celery,high", name="w2")
    app = live_app(broker_url, state_dir)

    async def scenario(pilot):
        screen, key = await open_workers(pilot, app, "w2@")
        await wait_for(pilot, lambda: "high" in row_text(screen.table, key), "w2's queues")
        await press(pilot, "D")
        confirm = await wait_screen(pilot, ConfirmScreen)
        scope = " ".join(confirm.action_.scope)
        assert confirm.action_.title == "Drain 1 worker"
        assert key in scope and "0 active and 0 reserved" in scope
        assert "afterwards nothing consumes: high" in scope  # w1 still consumes celery
        assert app.focused is confirm.query_one("#cancel", Button)
        await press(pilot, "enter")  # Cancel has the focus: nothing is sent
        await wait_screen(pilot, WorkersScreen)
        await pilot.pause(0.5)
        assert app.last_outcome is None and second.proc.poll() is None

        await press(pilot, "ctrl+d")
        confirm = await wait_screen(pilot, ConfirmScreen)
        assert confirm.action_.title == "Shut down 1 worker"
        assert f"warm shutdown of {key}" in confirm.action_.scope[0]
        assert app.focused is confirm.query_one("#cancel", Button)
        assert confirm.query_one("#confirm", Button).label.plain == "Shut down"
        await press(pilot, "tab", "enter")
        await outcome(pilot, "shutdown")
        await wait_for(pilot, lambda: second.proc.poll() is not None, "w2 to exit", timeout=20)
        await wait_for(pilot, lambda: "○ offline" in row_text(screen.table, key), "w2 shown offline", timeout=20)

    drive(app, scenario)
    assert [e["action"] for e in audit_lines(state_dir)] == ["shutdown"]
