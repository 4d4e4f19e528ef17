"""Canvases our client builds and sends must be the ones Celery 5.7's client builds and sends.

Found by Celery's own integration suite with our client and a real Celery worker
(``tests/celery_suite``, mode c): ``chain(...)`` and ``|`` built other canvases than Celery's
(a chord followed by a task ran that task once per member of a group body), a chord's
``link_error`` skipped a chord nested in its header, ``link_error=`` given to a chord whose body
is a chord landed on the wrong signature, and a chain sent ``chain: null`` where Celery's worker
extends a list. Each form is built by the real ``celery`` package next to ours and compared as
the JSON that goes on the wire.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import celery
import pytest
import redis

import engine
from engine import GroupResult
from engine.result import AsyncResult
from tests.unit.test_canvas_unit import _drain, _normalise, clients, make_celery, make_ours, wire

__all__ = ["clients"]  # the fixture, shared with test_canvas_unit


@pytest.fixture(scope="module")
def both() -> tuple[dict[str, Any], dict[str, Any]]:
    _app, ours = make_ours()
    _capp, theirs = make_celery()
    return ours, theirs


def _forms(t: dict[str, Any], mod: ModuleType) -> list[Any]:
    add, tsum, mul = t["add"], t["tsum"], t["mul"]
    return [
        # Celery's tests of issue #5958: what follows a chord with a group body joins that body
        mod.chain(
            mod.chord([add.si(1, 1), add.si(2, 2)], mod.group(tsum.s(), mul.s(2))),
            add.si(3, 3),
            mod.group(add.si(4, 4)),
            add.si(5, 5),
        ),
        mod.chain(
            mod.group(add.si(1, 1), add.si(2, 2)),
            mod.group(add.si(3, 3), add.si(4, 4)),
            mod.group(add.si(7, 7)),
            add.si(5, 5),
        ),
        mod.chord([add.si(1, 1)], tsum.s()) | mul.s(2) | mul.s(3),
        mod.group(add.si(1, 1), add.si(2, 2)) | mod.group(add.s(3), add.s(4)),
        add.s(1, 1) | mod.group(add.s(2)),
        mod.chain(add.s(1, 1), mod.chord([add.s(1), add.s(2)], tsum.s()), mod.group(add.s(3), add.s(4))),
    ]


@pytest.mark.parametrize("index", range(6))
def test_chain_and_pipe_build_celerys_canvas(both, index: int) -> None:
    ours, theirs = both
    mine, reference = _forms(ours, engine)[index], _forms(theirs, celery)[index]
    assert wire(mine) == wire(reference)
    assert mine["subtask_type"] == reference["subtask_type"]


def test_a_generator_group_keeps_celerys_tuple_args(both) -> None:
    ours, _ = both
    g = engine.group(ours["add"].s(i, i) for i in range(4))
    assert [(task.args, len(g.tasks)) for task in g.tasks] == [((i, i), 4) for i in range(4)]
    assert json.loads(json.dumps(g))["kwargs"]["tasks"][0]["args"] == [0, 0]


@pytest.mark.parametrize("on_header", [False, True])
def test_chord_link_error_reaches_a_chord_in_its_header(on_header: bool) -> None:
    app, ours = make_ours()
    capp, theirs = make_celery()
    app.conf.task_allow_error_cb_on_chord_header = on_header
    capp.conf.task_allow_error_cb_on_chord_header = on_header

    def build(t: dict[str, Any], mod: ModuleType) -> Any:
        inner = mod.chord([t["add"].si(1, 1), t["add"].si(2, 2)], t["tsum"].s())
        outer = mod.chord(mod.group([t["add"].si(3, 3), inner]), t["mul"].si(1, 2))
        outer.link_error(t["add"].si(0, 0))
        return outer

    mine = build(ours, engine)
    with warnings.catch_warnings():  # Celery warns that the setting's False default is pending deprecation
        warnings.simplefilter("ignore")
        reference = build(theirs, celery)
    assert wire(mine) == wire(reference)
    inner_body = mine["kwargs"]["header"][1]["kwargs"]["body"]
    # the nested chord links it itself (and, with the setting, once more as its header's copy)
    assert [e["task"] for e in inner_body["options"]["link_error"]] == ["canvas.add"] * (1 + on_header)


def test_link_error_given_to_a_chord_with_a_chord_body_is_sent_as_celery_sends_it(clients) -> None:
    ours, theirs, client = clients

    def send(t: dict[str, Any], mod: ModuleType) -> Any:
        body = mod.chord([t["tsum"].s(), t["tsum"].s()], t["tsum"].s())
        return mod.chord([t["add"].si(1, 1), t["add"].si(2, 2)], body).apply_async(link_error=t["mul"].si(0, 0))

    send(theirs, celery)
    reference = _drain(client)
    send(ours, engine)
    messages = _drain(client)
    assert len(messages) == len(reference) == 2
    for mine, theirs_msg in zip(messages, reference, strict=True):
        body, their_body = mine.embed["chord"], theirs_msg.embed["chord"]
        assert [e["task"] for e in body["options"]["link_error"]] == ["canvas.mul"]  # on the chord, not its body
        assert "link_error" not in body["kwargs"]["body"]["options"]
        assert _normalise(body["options"]["link_error"], {}) == _normalise(their_body["options"]["link_error"], {})


def test_a_chain_ending_in_a_chord_sends_chain_as_a_list(clients) -> None:
    ours, theirs, client = clients

    def send(t: dict[str, Any], mod: ModuleType) -> Any:
        body = mod.group(t["tsum"].s(), t["tsum"].s())
        return mod.chain(mod.chord([t["add"].si(1, 1)], body), t["add"].si(3, 3)).apply_async()

    send(theirs, celery)
    (reference,) = _drain(client)
    send(ours, engine)
    (message,) = _drain(client)
    # Celery's worker extends the body chain's ``chain`` option: ``None`` there raised a TypeError
    assert message.embed["chord"]["options"]["chain"] == reference.embed["chord"]["options"]["chain"] == []
    assert message.embed["chain"] is reference.embed["chain"] is None  # not passed on to the header


@pytest.fixture
def stored(redis_url: str, redis_client: redis.Redis) -> Iterator[tuple[engine.App, redis.Redis]]:
    app = engine.App("unit-children", broker=redis_url, backend=redis_url)
    yield app, redis_client
    app.close()


def test_children_stored_as_a_group_tuple_come_back_as_a_group_result(stored) -> None:
    app, client = stored
    meta = {
        "status": "FAILURE",
        "result": {"exc_type": "ValueError", "exc_message": ["x"], "exc_module": "builtins"},
        "traceback": None,
        "children": [[["g-1", None], [[["m-1", None], None], [["m-2", None], None]]], [["t-3", None], None]],
        "date_done": None,
        "task_id": "body-1",
    }
    client.set("celery-task-meta-body-1", json.dumps(meta))
    group_result, task_result = AsyncResult("body-1", app).children
    assert isinstance(group_result, GroupResult) and group_result.id == "g-1"
    assert [r.id for r in group_result.children] == ["m-1", "m-2"]
    assert type(task_result) is AsyncResult and task_result.id == "t-3"
    assert AsyncResult("body-1", app)._get_task_meta()["task_id"] == "body-1"
