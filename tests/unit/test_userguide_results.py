"""User Guide, Calling Tasks / Canvas / Results: the parts of ``AsyncResult`` and ``Signature`` a
migrating user's code reads, checked against what Celery 5.7's own classes give for the same calls.
"""

from __future__ import annotations

import itertools
from typing import Any

import celery
import celery.result
import pytest
import redis

from engine import App, signature
from engine.request import Request
from engine.trace import run


@pytest.fixture
def app(redis_url: str, redis_client: redis.Redis) -> Any:
    application = App("ug_results", broker=redis_url, backend=redis_url)
    yield application
    application.close()


def test_str_of_a_result_is_its_id_as_celerys(app: App) -> None:
    theirs = celery.result.AsyncResult("abc-1", app=celery.Celery(set_as_current=False))
    ours = app.AsyncResult("abc-1")
    assert str(theirs) == "abc-1"
    assert str(ours) == "abc-1" and f"sent {ours}" == "sent abc-1"


def test_result_extended_fields_are_read_from_the_stored_result(app: App) -> None:
    app.conf.result_extended = True
    task = app.task(name="ug.extended")(lambda x, y=0: x + y)
    request = Request(
        id="ext-1",
        name=task.name,
        args=[1],
        kwargs={"y": 2},
        hostname="w1@host",
        retries=0,
        delivery_info={"routing_key": "celery"},
        called_directly=False,
    )
    run(app, task, request)
    result = app.AsyncResult("ext-1")
    assert (result.name, result.args, result.kwargs, result.worker, result.retries, result.queue) == (
        "ug.extended",
        [1],
        {"y": 2},
        "w1@host",
        0,
        "celery",
    )
    assert result.exists() and not app.AsyncResult("never-sent").exists()
    assert app.AsyncResult("never-sent").name is None  # as Celery's: None when nothing says


def test_signature_attributes_as_celerys(app: App) -> None:
    def plus(x: int, y: int) -> int:
        return x + y

    add = app.task(name="ug.add")(plus)
    their_add = celery.Celery(set_as_current=False).task(name="ug.add")(plus)
    for sig, task in ((their_add.s(1), their_add), (add.s(1), add)):
        sig.set(parent_id="p", root_id="r")
        expected = ("ug.add", None, "p", "r", False)
        assert (sig.task, sig.subtask_type, sig.parent_id, sig.root_id, sig.immutable) == expected
        assert sig.type.name == task.name == "ug.add"
        sig.set_immutable(True)
        assert sig.immutable
        sig.immutable = False
        assert not sig.immutable
        replaced = sig.replace(args=(5,), kwargs={"y": 6})
        assert (tuple(replaced.args), replaced.kwargs, replaced.options["parent_id"]) == ((5,), {"y": 6}, "p")
        assert tuple(sig.args) == (1,)  # a copy: the signature itself is unchanged
        assert tuple(sig.partial((0,)).args) == (0, 1)
    assert signature("ug.add", app=app).task == "ug.add"
    assert app.signature("ug.add").subtask_type is None


def _run_in_worker(app: App, task: Any, task_id: str) -> None:
    """One run as a pool child runs it, storing its result on the session's server."""
    run(app, task, Request(id=task_id, name=task.name, called_directly=False))


def test_what_a_task_sends_becomes_its_results_children(app: App) -> None:
    from engine import group
    from engine.exceptions import IncompleteStream
    from engine.group_result import GroupResult

    add = app.task(name="ug.add")(lambda x, y: x + y)
    sent: dict[str, Any] = {}

    @app.task(name="ug.spawner")
    def spawner() -> None:
        sent["one"] = add.delay(1, 1)
        sent["group"] = group(add.s(2, 2), add.s(3, 3)).delay()
        sent["left_out"] = add.apply_async((4, 4), add_to_parent=False)

    @app.task(name="ug.untrailed", trail=False)
    def untrailed() -> None:
        add.delay(5, 5)

    _run_in_worker(app, spawner, "spawner-1")
    children = app.AsyncResult("spawner-1").children
    assert [type(c).__name__ for c in children] == ["AsyncResult", "GroupResult"]
    assert children[0].id == sent["one"].id
    assert isinstance(children[1], GroupResult) and children[1].id == sent["group"].id
    assert [r.id for r in children[1].results] == [r.id for r in sent["group"].results]
    assert sent["left_out"].id not in {c.id for c in children}
    walked = [node.id for _, node in app.AsyncResult("spawner-1").iterdeps(intermediate=True)]
    assert walked == ["spawner-1", sent["one"].id, sent["group"].id]
    with pytest.raises(IncompleteStream):  # as Celery's: a child not ready ends the walk past it
        list(app.AsyncResult("spawner-1").iterdeps())
    run(app, add, Request(id=sent["one"].id, name=add.name, args=[1, 1], called_directly=False))
    collected = app.AsyncResult("spawner-1").collect(intermediate=True, timeout=5)
    assert [(node.id, value) for node, value in itertools.islice(collected, 2)] == [
        ("spawner-1", None),
        (sent["one"].id, 2),
    ]
    _run_in_worker(app, untrailed, "untrailed-1")
    assert app.AsyncResult("untrailed-1").children == []
    assert add.delay(6, 6).id  # a send outside any task records nothing anywhere (no running request)


def test_get_on_message_hears_each_stored_state(app: App) -> None:
    import threading

    heard_progress = threading.Event()

    @app.task(name="ug.progress", bind=True)
    def progress(self: Any) -> str:
        self.update_state(state="PROGRESS", meta={"done": 1})
        assert heard_progress.wait(10)  # finishes only once the caller has seen PROGRESS
        return "fin"

    seen: list[tuple[str, Any]] = []

    def on_message(body: dict[str, Any]) -> None:
        seen.append((body["status"], body["result"]))
        assert body["task_id"] == "progress-1"
        if body["status"] == "PROGRESS":
            heard_progress.set()

    worker = threading.Thread(target=_run_in_worker, args=(app, progress, "progress-1"))
    worker.start()
    value = app.AsyncResult("progress-1").get(on_message=on_message, propagate=False, timeout=10, interval=0.05)
    worker.join(10)
    assert value == "fin"
    assert seen == [("PROGRESS", {"done": 1}), ("SUCCESS", "fin")]


def test_signature_keywords_and_a_direct_calls_request_as_celerys(app: App) -> None:
    theirs = celery.Celery(set_as_current=False)

    def seen(self: Any, x: int) -> list[Any]:
        return [tuple(self.request.args), self.request.kwargs, self.request.called_directly]

    for owner in (theirs, app):
        task = owner.task(name="ug.seen", bind=True)(seen)
        assert task(4) == [(4,), {}, True]  # called directly: a request of its own, as Celery's
        sig = task.signature((2,), immutable=True, countdown=10)
        assert sig.immutable and sig.options == {"countdown": 10} and tuple(sig.args) == (2,)
        assert tuple(sig.clone((9,)).args) == (2,)  # immutable: partial args are not taken
        named = owner.signature("ug.seen", (1,), immutable=True, options={"queue": "q"}, priority=3)
        assert named.immutable and named.options == {"queue": "q", "priority": 3}


def test_group_result_is_a_set_of_results_as_celerys(app: App) -> None:
    from engine.group_result import GroupResult

    their_app = celery.Celery(set_as_current=False)
    for make, owner in ((celery.result.GroupResult, their_app), (GroupResult, app)):
        a, b, c = (owner.AsyncResult(i) for i in ("a", "b", "c"))
        group_result = make("g-1", [a, b], app=owner)
        group_result.add(c)
        group_result.add(a)  # already there: once only
        group_result.discard("b")
        group_result.discard("not-there")
        group_result.update([owner.AsyncResult("d")])
        assert [r.id for r in group_result.results] == ["a", "c", "d"]
        group_result.remove(c)
        assert [r.id for r in group_result.results] == ["a", "d"]
        group_result.clear()
        assert group_result.results == []


def test_app_group_result_and_result_set_are_bound_to_the_app(app: App) -> None:
    from engine.group_result import GroupResult
    from engine.result import ResultSet

    saved = app.GroupResult("saved-group", [app.AsyncResult("m1"), app.AsyncResult("m2")])
    assert isinstance(saved, GroupResult) and saved.app is app
    saved.save()
    restored = app.GroupResult.restore("saved-group")
    assert restored is not None and [r.id for r in restored.results] == ["m1", "m2"]
    assert app.GroupResult.restore("never-saved") is None
    assert app.GroupResult.__name__ == celery.Celery(set_as_current=False).GroupResult.__name__ == "GroupResult"
    result_set = app.ResultSet([app.AsyncResult("m1")])
    assert isinstance(result_set, ResultSet) and result_set.app is app


class HttpError(Exception):
    """The Tasks guide's exception with several arguments."""

    def __init__(self, status_code: int, headers: Any = None, body: Any = None) -> None:
        self.status_code, self.headers, self.body = status_code, headers, body
        super().__init__(status_code, headers, body)


def test_an_exceptions_json_arguments_come_back_as_they_were(app: App) -> None:
    from engine.protocol.results import encode_exception

    raised = HttpError(404, {"content-type": "text/plain"}, ["not", "found"])
    theirs = celery.Celery(backend="redis://127.0.0.1:1/0", set_as_current=False).backend.prepare_exception(raised)
    assert encode_exception(raised)["exc_message"] == list(theirs["exc_message"])

    @app.task(name="ug.http_fail")
    def http_fail() -> None:
        raise HttpError(404, {"content-type": "text/plain"}, object())

    _run_in_worker(app, http_fail, "http-1")
    again = app.AsyncResult("http-1").result
    assert isinstance(again, HttpError) and again.status_code == 404
    assert again.headers == {"content-type": "text/plain"}  # a dict, not its repr
    assert isinstance(again.body, str) and again.body.startswith("<object object")  # not JSON: its repr
