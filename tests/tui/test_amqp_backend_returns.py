"""The console on RabbitMQ whose Redis result backend is away: live events show at once (RabbitMQ
carries them) and the recorded history is replayed when the backend answers again, below the live
tasks and without a task's events twice. Before, the event feed retried the replay with the stream
closed, so nothing live showed until the backend came back.

A real RabbitMQ node and worker, and a real Redis (persisted, so what it held survives) stopped
and restarted on its port; the console is driven with Pilot.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import WorkerProcess
from tests.integration.servers import Server, free_port, wait_until
from tests.tui.conftest import drive, live_app, press, wait_for, wait_screen
from tqctl.tui.screens.tasks import TasksScreen
from tqctl.tui.widgets.header import Banner

pytestmark = pytest.mark.integration


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Server]:
    """A Redis of its own that keeps its data across a restart (append-only file, fsync each write)."""
    server = Server(tmp_path / "backend", free_port(), ["appendonly yes", "appendfsync always"], "redis-server")
    server.start()
    wait_until(lambda: server.client().ping(), 20, "the backend Redis")
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def worker(amqp_url: str, backend: Server, tmp_path: Path) -> Iterator[WorkerProcess]:
    env = {"TQCTL_BACKEND": f"redis://127.0.0.1:{backend.port}/0", "LEDGER": str(tmp_path / "ledger.txt")}
    proc = WorkerProcess(amqp_url, ["-n", "late@%h", "-c", "1", "-Q", "late"], tmp_path / "worker.log", env)
    try:
        yield proc.wait_ready()
    finally:
        proc.close()


def banner(app: Any) -> str:
    """What the banner shows: nothing while it is hidden (its last text is not on screen)."""
    shown = [b for b in app.screen.query(Banner) if b.has_class("-shown")]
    return str(shown[0].render()) if shown else ""


def kinds(app: Any, uid: str) -> list[str]:
    task = app.model.state.task(uid)
    return [entry[0] for entry in task.timeline] if task is not None else []


def test_live_events_flow_while_the_backend_is_away_and_history_follows(
    amqp_url: str, backend: Server, worker: WorkerProcess, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine import App
    from engine.history import History

    backend_url = f"redis://127.0.0.1:{backend.port}/0"
    client = App("client", broker=amqp_url, backend=backend_url)
    client.conf.task_send_sent_event = True
    old = client.send_task("tests.apps.shop.add", [1, 2], queue="late")
    assert old.get(timeout=30) == 3
    history = History(backend.client())
    wait_until(lambda: history.find(old.id), 30, "the run recorded (after its result is stored)")
    backend.kill()
    monkeypatch.setenv("TQCTL_BACKEND", backend_url)
    app = live_app(amqp_url, state_dir)

    async def scenario(pilot: Any) -> None:
        await press(pilot, "4")
        tasks = await wait_screen(pilot, TasksScreen)
        new = client.send_task("tests.apps.shop.add", [2, 3], queue="late").id
        # The worker runs it (its result cannot be stored); its events come through RabbitMQ.
        await wait_for(pilot, lambda: new in tasks.table.row_keys, "the live task", 30)
        # from the events RabbitMQ carries (a worker's inspect replies would not give task-sent)
        await wait_for(pilot, lambda: "task-sent" in kinds(app, new), "its task-sent event", 30)
        assert app.model.state.task(old.id) is None  # the history is still to come
        line = await wait_for(pilot, lambda: "history not replayed" in (b := banner(app)) and b, "the banner", 30)
        assert "result backend unreachable" in line and f"127.0.0.1:{backend.port}" in line, line

        backend.start()
        await wait_for(
            pilot,
            lambda: old.id in tasks.table.row_keys,
            "the replayed history",
            60,
            lambda: banner(app),
        )
        rows = tasks.table.row_keys
        assert rows.index(new) < rows.index(old.id), rows  # the live task stays above the older one
        for uid in (new, old.id):
            seen = kinds(app, uid)
            assert len(seen) == len(set(seen)), (uid, seen)  # no event shown twice
        await wait_for(pilot, lambda: "history not replayed" not in banner(app), "the history note gone", 30)

    try:
        drive(app, scenario, timeout=150)
    finally:
        client.close()
