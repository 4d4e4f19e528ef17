"""Canvas data as Celery 5.7 shapes it: frozen chords, builtins, saved groups, redelivery marks."""

from __future__ import annotations

import json

import celery
import pytest
import redis
from celery.result import GroupResult as CeleryGroupResult

from engine import App, GroupResult, chain, chord, group
from engine.broker.redis import RedisBroker, mark_redelivered
from engine.canvas import maybe_signature
from engine.protocol import task as protocol
from engine.result import AsyncResult
from engine.workflows import Chord, Group, descend
from tests.apps.celery_canvas import celery_url
from tests.integration.test_canvas_celery import release_celery_results

NOWHERE = "redis://127.0.0.1:1/0"
BUILTINS = {
    "celery.chain",
    "celery.group",
    "celery.chord",
    "celery.chord_unlock",
    "celery.accumulate",
    "celery.map",
    "celery.starmap",
    "celery.chunks",
    "celery.backend_cleanup",
}


def make_app(url: str = NOWHERE) -> App:
    app = App("unit-c57", broker=url, backend=url)
    for name in ("add", "tsum"):
        app.task(name=f"c57.{name}")(lambda *a: a)
    return app


def test_builtins_are_registered_under_celerys_names() -> None:
    app = make_app()
    assert BUILTINS <= set(app.tasks)
    assert app.tasks["celery.accumulate"](1, 2, 3, index=1) == 2
    assert app.tasks["celery.accumulate"](1, 2) == (1, 2)


def test_a_frozen_celery_chord_header_reads_as_its_members() -> None:
    capp = celery.Celery("c57", set_as_current=False)
    add, tsum = capp.signature("c57.add"), capp.signature("c57.tsum")
    frozen = celery.chord([add.clone((1, 1)), add.clone((2, 2))], tsum)
    frozen.freeze()
    wire = json.loads(json.dumps(frozen))
    assert wire["kwargs"]["header"]["subtask_type"] == "group"  # Celery 5.7's shape, not a list
    ours = maybe_signature(wire, make_app())
    assert isinstance(ours, Chord)
    assert [m["args"] for m in ours.header] == [[1, 1], [2, 2]]
    assert ours.body.name == "c57.tsum" and descend(ours) == 1


def test_chord_size_counts_nested_groups_and_chain_tails() -> None:
    app = make_app()
    add = app.signature("c57.add")
    header = Group([add, group(add, add), chain(add, group(add, add, add))], app=app)
    assert descend(header) == 1 + 2 + 3


def test_a_chain_sent_with_chain_appends_the_rest(redis_client: redis.Redis, redis_url: str) -> None:
    """A chain step (or group member) started by a worker arrives with ``chain=`` already set."""
    app = make_app(redis_url)
    add = app.signature("c57.add")
    outer = [dict(add.clone((99,)))]
    chain(add.clone((1, 1)), add.clone((2,))).apply_async(chain=outer)
    (raw,) = redis_client.lrange("celery", 0, -1)
    message = protocol.decode(raw, frozenset({"application/json"}))
    names_args = [(s["task"], s["args"]) for s in message.embed["chain"]]
    assert names_args == [("c57.add", [99]), ("c57.add", [2])]  # next step last, the caller's rest first
    app.close()


def test_group_results_save_and_restore_across_clients(redis_client: redis.Redis, redis_url: str) -> None:
    app = make_app(redis_url)
    nested = GroupResult("g-in", [AsyncResult("t3", app)], app=app)
    saved = GroupResult("g1", [AsyncResult("t1", app), AsyncResult("t2", app), nested], app=app).save()
    capp = celery.Celery("c57", broker=celery_url(redis_url), backend=celery_url(redis_url), set_as_current=False)
    theirs = CeleryGroupResult.restore("g1", app=capp)
    assert [r.id for r in theirs.results[:2]] == ["t1", "t2"] and theirs.results[2].results[0].id == "t3"
    CeleryGroupResult("g2", [capp.AsyncResult("t9")], app=capp).save()
    ours = GroupResult.restore("g2", app=app)
    assert ours is not None and [r.id for r in ours] == ["t9"]
    assert GroupResult.restore("missing", app=app) is None
    assert GroupResult.restore("g1", app=app) == saved
    del theirs
    release_celery_results(capp)
    capp.close()
    app.close()


@pytest.mark.parametrize(
    "raw",
    [
        b'{"body": "e30=", "properties": {"delivery_info": {"exchange": "", "routing_key": "celery"}}}',
        b'{"body":"e30=","properties":{"delivery_info":{}}}',
    ],
)
def test_mark_redelivered_sets_the_flag_once(raw: bytes) -> None:
    marked = mark_redelivered(raw)
    assert json.loads(marked)["properties"]["delivery_info"]["redelivered"] is True
    assert mark_redelivered(marked) == marked


def test_requeued_messages_come_back_redelivered(redis_client: redis.Redis, redis_url: str) -> None:
    """The Lua requeue path marks the message; a plain first delivery is not marked."""
    broker = RedisBroker(redis_url)
    _, raw = protocol.build("c57.add", [1, 2], {})
    broker.publish("celery", raw)
    (first,) = broker.fetch("w1", ["celery"], 1, 0)
    assert protocol.decode(first.raw, frozenset({"application/json"})).delivery_info["redelivered"] is False
    assert broker.requeue("w1", [first.tag]) == 1
    (second,) = broker.fetch("w1", ["celery"], 1, 0)
    again = protocol.decode(second.raw, frozenset({"application/json"}))
    assert again.delivery_info["redelivered"] is True and again.args == [1, 2]
    broker.close()


def test_a_chord_header_given_as_a_chain_or_a_single_task() -> None:
    """Celery's ``_maybe_group``: a chain header gives its steps, one signature is a header of one."""
    app = make_app()
    add, tsum = app.signature("c57.add"), app.signature("c57.tsum")
    assert [m.name for m in chord(chain([add.clone((1,))]), add).header] == ["c57.add"]
    assert [m["args"] for m in chord(add.clone((2,)), tsum).header] == [(2,)]
    assert isinstance(chord(add, tsum), Chord)
