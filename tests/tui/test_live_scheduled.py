"""Scheduled screen against a real server: an ETA task run now; beat entries run now, disabled and
enabled again (entries come from the app given with -A)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from textual.widgets import Button

from tests.integration.conftest import client_app
from tests.tui.conftest import audit_lines, cell, drive, live_app, outcome, press, shown_rows, wait_for, wait_screen
from tqctl.tui.screens.dialogs import ConfirmScreen
from tqctl.tui.screens.scheduled import ScheduledScreen

pytestmark = pytest.mark.integration


@pytest.fixture
def beatapp(broker_url, backend_url):  # noqa: ANN001, ANN201
    yield from client_app("tests.apps.beatapp", broker_url, backend_url)


# AMQP: an ETA task waits in RabbitMQ's delay queues, which can be neither listed nor moved (the
# Scheduled screen says so there); Redis-only.
def test_eta_task_run_now_and_revoke(broker_url, start_worker, shop, state_dir, redis_client):
    start_worker("-c", "1", "-P", "threads")
    app = live_app(broker_url, state_dir)
    later = shop.add.apply_async((20, 22), countdown=600).id
    unwanted = shop.add.apply_async((1, 1), countdown=900).id

    async def scenario(pilot):
        await press(pilot, "6")
        screen = await wait_screen(pilot, ScheduledScreen)
        eta = screen.query_one("#eta")
        await wait_for(pilot, lambda: later in eta.row_keys, "the ETA task", show=lambda: shown_rows(eta))
        assert cell(eta, later, "due") in ("in 9m", "in 10m") and cell(eta, later, "name").endswith("shop.add")
        eta.select_key(later)
        eta.focus()
        await press(pilot, "x")  # not destructive: sent at once, audited
        done = await outcome(pilot, "eta_run_now")
        assert done.outcome.summary.endswith("moved to 'celery' now")
        await wait_for(pilot, lambda: (t := app.model.state.task(later)) and t.state == "SUCCESS", "it ran")
        assert app.model.state.task(later).result == "42"
        await wait_for(pilot, lambda: later not in eta.row_keys, "gone from the ETA table")

        app.last_outcome = None
        eta.select_key(unwanted)
        await press(pilot, "ctrl+d")
        confirm = await wait_screen(pilot, ConfirmScreen)
        assert confirm.action_.verb == "revoke" and confirm.action_.target == unwanted
        assert app.focused is confirm.query_one("#cancel", Button)
        await press(pilot, "tab", "enter")
        await outcome(pilot, "revoke")
        assert redis_client.zscore("tqctl.revoked", unwanted) is not None  # kept in the broker for every worker
        # still in the broker until due (a worker drops it then): the row says it will not run
        # (it read "in 14m", as if the revoke had not happened)
        await wait_for(pilot, lambda: cell(eta, unwanted, "due") == "⊘ REVOKED", "shown revoked while it waits")
        app.last_outcome = None  # sent now, the revoked task is discarded by the worker instead of run
        eta.select_key(unwanted)
        await press(pilot, "x")
        await outcome(pilot, "eta_run_now")
        await wait_for(pilot, lambda: (t := app.model.state.task(unwanted)) and t.state == "REVOKED", "discarded")

    drive(app, scenario)
    assert [e["action"] for e in audit_lines(state_dir)] == ["eta_run_now", "revoke", "eta_run_now"]


def test_an_eta_task_revoked_elsewhere_shows_revoked(broker_url, start_worker, shop, state_dir):
    """Revoked from the command line (or another console), the ETA task's row still read "in 15m":
    only this console's own revokes were marked. The broker's revoke store is read each poll."""
    start_worker("-c", "1", "-P", "threads")
    app = live_app(broker_url, state_dir)
    unwanted = shop.add.apply_async((1, 1), countdown=900).id
    kept = shop.add.apply_async((2, 2), countdown=900).id

    async def scenario(pilot):
        await press(pilot, "6")
        screen = await wait_screen(pilot, ScheduledScreen)
        eta = screen.query_one("#eta")
        await wait_for(
            pilot, lambda: {unwanted, kept} <= set(eta.row_keys), "both ETA tasks", show=lambda: shown_rows(eta)
        )
        done = subprocess.run(
            [sys.executable, "-m", "tqctl", "revoke", unwanted, "--yes", "--broker", broker_url],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stderr
        await wait_for(pilot, lambda: cell(eta, unwanted, "due") == "⊘ REVOKED", "shown revoked while it waits")
        assert cell(eta, kept, "due") in ("in 14m", "in 15m")

    drive(app, scenario)


@pytest.mark.amqp_too
def test_beat_entries_run_now_disable_enable(broker_url, beatapp, state_dir):
    app = live_app(broker_url, state_dir, app=beatapp.app, app_spec="tests.apps.beatapp")

    async def scenario(pilot):
        await press(pilot, "6")
        screen = await wait_screen(pilot, ScheduledScreen)
        beat = screen.query_one("#beat")
        await wait_for(
            pilot, lambda: "every-second" in beat.row_keys, "the beat entries", show=lambda: shown_rows(beat)
        )
        assert cell(beat, "every-second", "enabled") == "✓ on"
        assert cell(beat, "every-second", "task") == "beatapp.tick"
        assert "no beat is running" in str(screen.query_one("#beat-title").render())
        await press(pilot, "tab")  # to the beat table
        assert beat.has_focus
        beat.select_key("every-second")
        await press(pilot, "x")
        done = await outcome(pilot, "beat_run_now")
        assert done.outcome.summary.startswith("every-second sent as ")
        await wait_for(pilot, lambda: beatapp.app.broker.queue_depth("celery") == 1, "one tick on the queue")

        app.last_outcome = None
        await press(pilot, "d")
        await outcome(pilot, "beat_disable")
        await wait_for(pilot, lambda: cell(beat, "every-second", "enabled") == "○ off", "shown off")
        assert cell(beat, "every-second", "next") == "-"

        app.last_outcome = None
        await press(pilot, "e")
        await outcome(pilot, "beat_enable")
        await wait_for(pilot, lambda: cell(beat, "every-second", "enabled") == "✓ on", "shown on again")

    drive(app, scenario)
    entries = audit_lines(state_dir)
    assert [e["action"] for e in entries] == ["beat_run_now", "beat_disable", "beat_enable"]
    assert entries[1]["command"] == "tqctl beat disable every-second -A tests.apps.beatapp"


def test_an_app_with_no_broker_of_its_own_reads_beat_on_the_consoles_cluster(
    broker_url, redis_client, state_dir, tmp_path, monkeypatch
):
    """`tqctl --broker URL -A app` (and `tqctl up -A app --state-dir DIR`) with an app that names
    no broker: its own lookup started a second bundled broker in ./.tqctl, and the Scheduled screen
    read beat's state there ("no beat is running", every entry on). Now it reads this cluster's."""
    import datetime as dt

    from engine import bundled
    from engine.beat_store import BeatStore
    from tqctl.tui.launch import aimed, load

    monkeypatch.delenv("TQCTL_BROKER", raising=False)
    monkeypatch.delenv("TQCTL_STATE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    BeatStore(redis_client).set_enabled("every-minute", False, dt.datetime.now(dt.timezone.utc))
    engine_app = load("tests.apps.beatapp")
    before = engine_app.conf.broker_url
    engine_app.close()
    engine_app.conf.broker_url = None  # as the module leaves it: no broker named
    try:
        app = live_app(broker_url, state_dir, app=aimed(engine_app, broker_url), app_spec="tests.apps.beatapp")

        async def scenario(pilot):
            await press(pilot, "6")
            screen = await wait_screen(pilot, ScheduledScreen)
            beat = screen.query_one("#beat")
            await wait_for(pilot, lambda: "every-minute" in beat.row_keys, "the beat entries")
            await wait_for(
                pilot,
                lambda: cell(beat, "every-minute", "enabled") == "○ off",
                "the entry disabled on this cluster",
                show=lambda: shown_rows(beat),
            )
            assert cell(beat, "every-second", "enabled") == "✓ on"

        drive(app, scenario)
        assert not (tmp_path / ".tqctl").exists()  # no second broker was started here
    finally:
        engine_app.close()
        engine_app.conf.broker_url = before
        bundled.stop(tmp_path / ".tqctl")  # the stray one, had it started (stop is a no-op otherwise)


def test_beat_entries_are_read_on_every_poll_when_the_app_is_given(broker_url, beatapp):
    """Beat's rows were read every third poll (about 6 s): a 2 s entry always showed "due" or
    "6s late". With -A APP (one cheap read of the entries' state) every poll reads them."""
    from tqctl.tui.probe import Probe

    with_app, without = Probe(broker_url, beatapp.app), Probe(broker_url)
    try:
        fast = with_app.snapshot(slow=False)
        assert fast.beat is not None and {row["name"] for row in fast.beat} >= {"every-second", "every-minute"}
        assert without.snapshot(slow=False).beat is None  # listing entries without the app is a SCAN: slow polls only
        assert without.snapshot(slow=True).beat is not None
    finally:
        with_app.close()
        without.close()
