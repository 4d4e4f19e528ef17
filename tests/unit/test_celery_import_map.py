"""`from celery.X import Y` becomes `from engine.X import Y`: the names Celery apps import from
Celery's modules are found at the same place in the engine, and Celery's exception hierarchy
holds (an app's `except CeleryError` or `except TaskPredicate` still catches what it did).

Checked against the real celery package (a test dependency), not a list typed here."""

from __future__ import annotations

import importlib
import socket

import celery.exceptions
import pytest

import engine
from engine import App, exceptions
from engine.result import AsyncResult, ResultBase, ResultSet

# Celery's module → ours, and the names of it an app imports that the engine provides at the same path.
SAME_PLACE = {
    ("celery", "engine"): [
        "Celery", "Task", "chain", "chord", "chunks", "current_app", "current_task", "group",
        "maybe_signature", "shared_task", "signature", "states", "subtask", "uuid", "xmap", "xstarmap",
    ],
    ("celery.result", "engine.result"): ["AsyncResult", "GroupResult", "ResultBase", "ResultSet", "result_from_tuple"],
    ("celery.canvas", "engine.canvas"): [
        "Signature", "chain", "chord", "chunks", "group", "maybe_signature", "signature", "xmap", "xstarmap",
    ],
    ("celery.exceptions", "engine.exceptions"): [
        "CeleryError", "ChordError", "Ignore", "ImproperlyConfigured", "MaxRetriesExceededError", "NotRegistered",
        "Reject", "Retry", "SoftTimeLimitExceeded", "TaskError", "TaskPredicate", "TaskRevokedError",
        "TimeLimitExceeded", "TimeoutError", "WorkerLostError",
    ],
    ("celery.signals", "engine.signals"): ["worker_before_create_process", "worker_process_init", "task_prerun"],
}  # fmt: skip


@pytest.mark.parametrize(("theirs", "ours"), list(SAME_PLACE))
def test_an_import_line_moves_by_its_first_word(theirs: str, ours: str) -> None:
    celery_module, engine_module = importlib.import_module(theirs), importlib.import_module(ours)
    names = SAME_PLACE[(theirs, ours)]
    assert [n for n in names if not hasattr(celery_module, n)] == []  # each is Celery's, at that path
    assert [n for n in names if not hasattr(engine_module, n)] == []


def test_the_same_objects_whichever_path_they_come_from() -> None:
    from engine import canvas, result, workflows

    for name in ("chain", "group", "chord", "chunks", "xmap", "xstarmap"):
        assert getattr(canvas, name) is getattr(workflows, name) is getattr(engine, name)
    assert result.GroupResult is engine.GroupResult
    assert engine.subtask is engine.signature


@pytest.mark.parametrize("name", SAME_PLACE[("celery.exceptions", "engine.exceptions")])
def test_each_exception_has_celerys_ancestors(name: str) -> None:
    """Celery's bases of each (``Retry`` is a ``TaskPredicate``, ``ImproperlyConfigured`` a
    ``CeleryError``) are bases of ours, so an app's ``except`` clauses catch what they caught."""
    theirs, ours = getattr(celery.exceptions, name), getattr(exceptions, name)
    wanted = {b.__name__ for b in theirs.__mro__ if b.__module__.startswith("celery")}
    assert wanted <= {b.__name__ for b in ours.__mro__}


def test_an_apps_except_celeryerror_catches_a_misconfiguration() -> None:
    app = App("importmap", broker="nonsense://nowhere")
    with pytest.raises(exceptions.CeleryError, match="nonsense"):
        app.send_task("tasks.add", (1, 2))


def test_results_share_celerys_base_and_come_back_from_their_tuples() -> None:
    app = App("importmap", broker="redis://127.0.0.1:1/0")
    group = engine.GroupResult("g1", [AsyncResult("a", app), AsyncResult("b", app)], app=app)
    assert all(isinstance(r, ResultBase) for r in (group, group.results[0], ResultSet([], app=app)))
    back = importlib.import_module("engine.result").result_from_tuple(group.as_tuple(), app)
    assert isinstance(back, engine.GroupResult) and back.id == "g1" and [r.id for r in back.results] == ["a", "b"]


def test_xmap_xstarmap_and_chunks_build_what_the_task_methods_build() -> None:
    app = App("importmap", broker="redis://127.0.0.1:1/0")

    @app.task(name="importmap.add")
    def add(x: int, y: int) -> int:
        return x + y

    assert dict(engine.xmap(add.s(), [1, 2])) == dict(add.map([1, 2]))
    assert dict(engine.xstarmap(add.s(), [(1, 2)])) == dict(add.starmap([(1, 2)]))
    made, method = engine.chunks(add.s(), [(1, 2), (3, 4), (5, 6)], 2).group(), add.chunks([(1, 2), (3, 4), (5, 6)], 2)
    assert [dict(t)["kwargs"]["it"] for t in made.tasks] == [[(1, 2), (3, 4)], [(5, 6)]]
    assert [dict(t) for t in made.tasks] == [dict(t) for t in method.group().tasks]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_a_send_to_a_broker_that_is_down_raises_kombus_operational_error(scheme: str) -> None:
    """Celery's ``delay()`` raises kombu's ``OperationalError`` when the broker is down, and apps
    catch it to degrade (``except OperationalError: ...``); ours raised an exception of its own
    that such a clause let through. Now a send, a bulk send and a group raise one that is both."""
    from kombu.exceptions import OperationalError

    port = _closed_port()
    url = f"redis://127.0.0.1:{port}/0" if scheme == "redis" else f"amqp://guest:guest@127.0.0.1:{port}//"
    app = App("down", broker=url, result_backend=None if scheme == "redis" else "rpc://")

    @app.task(name="down.add")
    def add(x: int, y: int) -> int:
        return x + y

    sends = (
        lambda: add.delay(1, 2),
        lambda: app.send_many("down.add", [((1, 2), None)]),
        lambda: engine.group(add.s(1, 2), add.s(3, 4)).apply_async(),
    )
    for send in sends:
        with pytest.raises(OperationalError) as caught:
            send()
        assert isinstance(caught.value, exceptions.BrokerUnavailable)  # the engine's own handlers still catch it
        assert f"127.0.0.1:{port}" in str(caught.value) and "\n" not in str(caught.value)
    assert importlib.import_module("engine.exceptions").OperationalError is OperationalError
    app.close()
