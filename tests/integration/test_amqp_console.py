"""The console on a RabbitMQ cluster (Textual's Pilot, a real tqctl worker): queues with depth,
the worker and a pool grow, a failed task's detail from the failure inbox on the Redis result
backend, and a retry from it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import WorkerProcess
from tests.tui.conftest import cell, drive, live_app, outcome, press, wait_for, wait_screen
from tqctl.tui.screens.queues import PeekScreen, QueuesScreen
from tqctl.tui.screens.task_detail import TaskDetailScreen
from tqctl.tui.screens.workers import WorkersScreen

pytestmark = pytest.mark.integration
APP = "tests.apps.amqp_ops_app"


@pytest.fixture
def worker(amqp_url: str, redis_url: str, redis_client: object, tmp_path: Path) -> Iterator[WorkerProcess]:
    env = {"AMQP_TEST_BACKEND": redis_url}
    argv = ["-n", "console@%h", "-c", "1", "-P", "prefork", "-l", "info"]
    proc = WorkerProcess(amqp_url, argv, tmp_path / "w.log", env, app=APP)
    try:
        yield proc.wait_ready(60)
    finally:
        proc.close()


def test_console_on_amqp(
    amqp_url: str, redis_url: str, worker: WorkerProcess, amqp_client: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("TQCTL_BACKEND", redis_url)  # where the cluster keeps history and failures
    app = live_app(amqp_url, tmp_path)

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: app.model.snapshot and app.model.snapshot.replies, "the worker to answer", 60)
        assert app.model.snapshot.server.startswith("rabbitmq ")

        await press(pilot, "3")
        queues = await wait_screen(pilot, QueuesScreen)
        await wait_for(pilot, lambda: cell(queues.table, "celery", "depth") == "0", "celery, empty", 30)
        assert "✓ ok" in cell(queues.table, "celery", "warn")
        queues.table.select_key("celery")
        await press(pilot, "enter")  # RabbitMQ cannot peek: the screen says so instead of an empty list
        peek = await wait_screen(pilot, PeekScreen)
        await wait_for(pilot, lambda: peek.loaded, "the peek's answer", 30)
        assert "cannot be peeked" in (peek.error or "")
        await press(pilot, "escape")

        await press(pilot, "2")
        workers = await wait_screen(pilot, WorkersScreen)
        key = await wait_for(
            pilot, lambda: next((k for k in workers.table.row_keys if k.startswith("console@")), None), "its row"
        )
        workers.table.select_key(key)
        await wait_for(pilot, lambda: cell(workers.table, key, "conc") == "1", "concurrency 1", 30)
        await press(pilot, "plus")
        assert "1 ok" in (await outcome(pilot, "pool_grow", 30)).outcome.summary
        await wait_for(pilot, lambda: cell(workers.table, key, "conc") == "2", "concurrency 2", 30)

        failed = amqp_client.send_task(f"{APP}.charge", [7]).id
        await wait_for(pilot, lambda: (t := app.model.state.task(failed)) and t.state == "FAILURE", "the failure", 60)
        # the failure inbox (on the result backend) as the console polls it
        await wait_for(pilot, lambda: failed in {f["id"] for f in app.model.failures_stored}, "the inbox", 60)
        app.open_task(failed)
        detail = await wait_screen(pilot, TaskDetailScreen)
        # the full original message, from the failure inbox on the result backend
        await wait_for(pilot, lambda: detail.detail and detail.detail.get("message"), "the stored message", 60)
        assert detail.detail["message"]["args"] == [7]
        assert detail.detail["result_meta"]["status"] == "FAILURE"
        await press(pilot, "r")
        retried = await outcome(pilot, "retry", 30)
        new_id = retried.outcome.replies["new_id"]
        await wait_for(
            pilot, lambda: (t := app.model.state.task(new_id)) and t.state == "FAILURE", "the retry to run", 60
        )

        # a revoke from the console is stored on the backend: the task sent after it never runs
        replies = app.source.adapter.revoke(["doomed-console"])
        assert [list(r) for r in replies] == [[key]]
        doomed = amqp_client.send_task(f"{APP}.add", [1, 1], task_id="doomed-console")
        assert amqp_client.send_task(f"{APP}.add", [2, 2]).get(timeout=60) == 4  # the sentinel, after it
        assert doomed.state == "REVOKED"

    drive(app, scenario, timeout=240)


def test_up_on_amqp_starts_workers_and_the_console_sees_them(
    amqp_url: str, redis_url: str, redis_client: object, amqp_client: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """``tqctl up --broker amqp://...``: the workers it starts run on RabbitMQ with the app's Redis
    result backend, and the console it opens (driven here by Pilot) sees them and their tasks."""
    import importlib

    from tqctl.tui import launch
    from tqctl.tui.app import TqctlApp
    from tqctl.tui.audit import AuditLog
    from tqctl.tui.feed import LiveSource

    monkeypatch.setenv("AMQP_TEST_BACKEND", redis_url)  # the workers' result_backend
    monkeypatch.delenv("TQCTL_BACKEND", raising=False)
    importlib.import_module(APP).app.conf.result_backend = redis_url  # (if imported before, without it)
    seen: list[str] = []

    async def scenario(pilot: Any) -> None:
        tapp = pilot.app
        name = await wait_for(
            pilot,
            lambda: next(
                (h for h in (tapp.model.snapshot.replies if tapp.model.snapshot else {}) if "up1@" in h), None
            ),
            "the worker tqctl up started",
            90,
        )
        done = amqp_client.send_task(f"{APP}.add", [20, 22]).id
        await wait_for(pilot, lambda: (t := tapp.model.state.task(done)) and t.state == "SUCCESS", "its task", 60)
        seen.append(name)

    def console(**kw: Any) -> str:
        source = LiveSource(kw["url"], launch.load(kw["app_spec"]), kw["app_spec"], snapshot_interval=0.5)
        audit = AuditLog.in_state_dir(str(tmp_path))
        drive(TqctlApp(source, audit=audit, owned=kw["owned"], tick=0.2, still=True), scenario, timeout=150)
        return "stop"

    monkeypatch.setattr(launch, "open_console", console)
    monkeypatch.setattr(launch, "has_terminal", lambda: True)  # (pytest's stdin is none)
    launch.up(
        app_spec=APP,
        concurrency=1,
        workers=1,
        beat=False,
        detach=False,
        pool="threads",
        queues="",
        broker=amqp_url,
        state_dir=str(tmp_path),
        read_only=False,
        say=lambda text: None,
    )
    assert len(seen) == 1


def test_up_on_amqp_without_a_redis_backend_says_so_before_starting(
    amqp_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    from tqctl.tui import launch

    monkeypatch.setattr(launch, "has_terminal", lambda: True)  # (pytest's stdin is none)
    with pytest.raises(launch.LaunchError, match="need a Redis result backend"):
        launch.up(
            app_spec="tests.apps.shop",
            concurrency=1,
            workers=1,
            beat=False,
            detach=False,
            pool="threads",
            queues="",
            broker=amqp_url,
            state_dir=str(tmp_path),
            read_only=False,
            say=lambda text: None,
        )


def test_a_console_opened_later_shows_only_the_failures_still_in_the_inbox(
    amqp_url: str,
    redis_url: str,
    redis_client: Any,
    worker: WorkerProcess,
    amqp_client: Any,
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    """Failures retried or discarded before the console opened are in the history it replays, but
    not in the inbox: the Failures screen counts them neither open nor as members (it showed every
    replayed failure as open, where ``tqctl failures`` said 1)."""
    from engine.history import History
    from tqctl.tui.screens.failures import FailuresScreen
    from tqctl.tui.views import failure_groups

    monkeypatch.setenv("TQCTL_BACKEND", redis_url)
    kept, gone = (amqp_client.send_task(f"{APP}.charge", [n]) for n in (1, 2))
    for result in (kept, gone):
        result.get(timeout=60, propagate=False)
    history = History(redis_client)
    deadline = time.monotonic() + 30
    while {f["id"] for f in history.failures()} != {kept.id, gone.id} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert history.delete_failure(gone.id)  # as `tqctl discard` does
    app = live_app(amqp_url, tmp_path)

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: app.model.state.task(gone.id) is not None, "the replayed history", 60)
        # the queue each ran from, as the history has it (the task's header said "queue -")
        assert app.model.state.task(kept.id).queue == "celery"
        await wait_for(pilot, lambda: app.model.history_available, "the inbox", 60)
        await press(pilot, "5")
        await wait_screen(pilot, FailuresScreen)
        groups = failure_groups(app.model)
        assert [[m.id for m in g.members] for g in groups] == [[kept.id]]

    drive(app, scenario, timeout=150)
