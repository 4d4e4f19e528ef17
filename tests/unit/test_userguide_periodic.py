"""User Guide, Periodic Tasks: the guide's ``@app.on_after_configure.connect`` receiver calling
``sender.add_periodic_task(...)`` fills ``beat_schedule`` as Celery 5.7's does, and beat schedules it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import celery
import celery.schedules
import pytest

from engine import App, beat
from engine.schedules import crontab

NOWHERE = "redis://127.0.0.1:1/0"


def _guide_app(app: Any, cron: Any) -> dict[str, Any]:
    """The guide's example, written once for either library's app."""
    heard: dict[str, Any] = {}

    @app.task(name="ug.test")
    def test(arg: str) -> None:
        """Prints its argument."""

    @app.task(name="ug.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.on_after_configure.connect
    def setup_periodic_tasks(sender: Any, **kwargs: Any) -> None:
        heard["sender"] = sender
        sender.add_periodic_task(10.0, test.s("hello"), name="add every 10")
        sender.add_periodic_task(30.0, test.s(), args=("world",), expires=10)
        sender.add_periodic_task(cron(hour=7, minute=30, day_of_week=1), test.s("Happy Mondays!"))
        sender.add_periodic_task(dt.timedelta(minutes=5), add.s(1), kwargs={"y": 2}, queue="periodic")

    heard["receiver"] = setup_periodic_tasks  # receivers are weak references, as in Celery: keep it
    return heard


def _schedule(value: Any) -> Any:
    """Seconds and timedeltas as they are; a crontab by its kind (each library has its own repr)."""
    return value if isinstance(value, (int, float, dt.timedelta)) else type(value).__name__


def _plain(entries: dict[str, Any]) -> dict[str, Any]:
    return {
        key: {**entry, "schedule": _schedule(entry["schedule"]), "args": tuple(entry["args"])}
        for key, entry in entries.items()
    }


def test_add_periodic_task_in_on_after_configure_as_celerys() -> None:
    theirs = celery.Celery("ug_periodic", set_as_current=False)
    their_heard = _guide_app(theirs, celery.schedules.crontab)
    expected = _plain(theirs.conf.beat_schedule)  # Celery configures, and sends the signal, on this read
    ours = App("ug_periodic", broker=NOWHERE)
    heard = _guide_app(ours, crontab)
    assert "sender" not in heard  # as Celery: the receiver runs once the app is finalized
    entries = beat.load_entries(ours)  # what beat reads at start
    assert heard["sender"] is ours and their_heard["sender"] is theirs
    assert _plain(ours.conf.beat_schedule) == expected
    assert sorted(entries) == sorted(expected)
    assert entries["add every 10"].task == "ug.test" and entries["add every 10"].args == ("hello",)
    assert entries["ug.add(1, y=2)"].options == {"queue": "periodic"}
    assert ours.conf.beat_schedule["ug.test('Happy Mondays!')"]["schedule"] == crontab(30, 7, day_of_week=1)
    ours.finalize()  # once only
    assert len(ours.conf.beat_schedule) == 4
    ours.close()


def test_the_worker_start_finalizes_and_an_unnamed_repeat_warns(caplog: pytest.LogCaptureFixture) -> None:
    app = App("ug_periodic_worker", broker=NOWHERE)
    finalized: list[Any] = []
    receiver = app.on_after_finalize.connect(lambda sender, **kw: finalized.append(sender))
    task = app.task(name="ug.ping")(lambda: "pong")
    app.import_default_modules()  # what the worker does at start
    assert finalized == [app] and app.finalized and receiver is not None
    app.add_periodic_task(5, task.s())
    app.add_periodic_task(6, task.s())
    assert "shadowed a previous unnamed periodic task" in caplog.text
    assert app.conf.beat_schedule["ug.ping()"]["schedule"] == 6
    app.close()


def test_a_clients_first_send_finalizes_as_celerys_first_config_read(redis_url: str, redis_client: Any) -> None:
    app = App("ug_client_finalize", broker=redis_url)
    heard: list[Any] = []
    receiver = app.on_after_configure.connect(lambda sender, **kw: heard.append(sender))
    task = app.task(name="ug.sent")(lambda: None)
    assert heard == []
    redis_client.delete("celery")
    task.delay()
    task.delay()
    assert heard == [app] and receiver is not None  # once
    redis_client.delete("celery")
    app.close()
