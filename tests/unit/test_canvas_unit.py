"""Canvas objects as data: our signatures must be Celery 5.7's signature dicts, byte for byte.

The real ``celery`` package builds the reference for each form. Where a test must see what the
client publishes (chain and chord messages), it applies the workflow with no worker running and
reads the messages back from the session's real server, next to the same workflow published by a
real Celery client.
"""

from __future__ import annotations

import gc
import json
import re
from typing import Any

import celery
import pytest
import redis
from celery.result import AsyncResult as CeleryAsyncResult

from engine import App, Signature, chain, chord, group, signature
from engine.canvas import maybe_signature
from engine.protocol import task as protocol
from engine.protocol.results import group_key
from engine.workflows import Chain, Chord, Group, from_dict

NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens there: these tests never connect
SIG_KEYS = {"task", "args", "kwargs", "options", "subtask_type", "immutable"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def wire(value: Any) -> Any:
    return json.loads(json.dumps(value))


def make_ours(url: str = NOWHERE) -> tuple[App, dict[str, Any]]:
    app = App("unit-canvas", broker=url, backend=url)
    tasks = {name: app.task(name=f"canvas.{name}")(fun) for name, fun in FUNS.items()}
    return app, tasks


def make_celery(url: str | None = None) -> tuple[celery.Celery, dict[str, Any]]:
    app = celery.Celery("unit-canvas-celery", broker=url, backend=url, set_as_current=False)
    tasks = {name: app.task(name=f"canvas.{name}")(fun) for name, fun in FUNS.items()}
    return app, tasks


def _add(x: int, y: int) -> int:
    return x + y


def _mul(x: int, y: int) -> int:
    return x * y


def _tsum(values: list[int]) -> int:
    return sum(values)


FUNS = {"add": _add, "mul": _mul, "tsum": _tsum}


@pytest.fixture(scope="module")
def both() -> tuple[dict[str, Any], dict[str, Any]]:
    _app, ours = make_ours()
    _capp, theirs = make_celery()
    return ours, theirs


# -- signature dicts ----------------------------------------------------------------------------


def test_task_signature_has_exactly_celerys_keys(both) -> None:
    ours, theirs = both
    sig = ours["add"].s(1)
    assert isinstance(sig, dict) and set(sig) == SIG_KEYS
    assert wire(sig) == wire(theirs["add"].s(1))
    assert sig["subtask_type"] is None and sig["immutable"] is False


def test_si_and_set_match_celery(both) -> None:
    ours, theirs = both
    mine = ours["add"].si(1, 2).set(queue="other", countdown=3)
    assert mine.immutable and mine["immutable"] is True
    assert wire(mine) == wire(theirs["add"].si(1, 2).set(queue="other", countdown=3))


@pytest.mark.parametrize("form", ["chain", "pipe", "group", "chord", "group_pipe", "nested"])
def test_workflow_dicts_match_celery(both, form: str) -> None:
    ours, theirs = both

    def build(t: dict[str, Any], lib: Any) -> Any:
        if form == "chain":
            return lib.chain(t["add"].s(1, 2), t["mul"].s(3), t["add"].si(1, 1))
        if form == "pipe":
            return t["add"].s(1, 2) | t["mul"].s(3) | t["add"].s(4)
        if form == "group":
            return lib.group(t["add"].s(1, 2), t["add"].s(3, 3))
        if form == "chord":
            return lib.chord([t["add"].s(1, 2), t["add"].s(3, 3)], t["tsum"].s())
        if form == "group_pipe":
            return lib.group(t["add"].s(1, 2), t["add"].s(3, 3)) | t["tsum"].s()
        return lib.group(lib.chain(t["add"].s(1, 1), t["mul"].s(2)), t["add"].s(5, 5))

    import engine

    mine, reference = build(ours, engine), build(theirs, celery)
    assert wire(mine) == wire(reference)
    expected_type = {
        "chain": "chain",
        "pipe": "chain",
        "group": "group",
        "chord": "chord",
        "group_pipe": "chord",
        "nested": "group",
    }[form]
    assert mine["subtask_type"] == expected_type and mine["task"] == f"celery.{expected_type}"
    assert set(mine) == SIG_KEYS


def test_signature_by_name_takes_celerys_keyword_options(both) -> None:
    _ours, theirs = both
    mine = signature("canvas.add", args=(2, 2), countdown=10)
    assert wire(mine) == wire(celery.signature("canvas.add", args=(2, 2), countdown=10))
    assert signature("canvas.add", args=(2, 2), options={"queue": "q"}).options == {"queue": "q"}


def test_link_and_on_error_match_celery(both) -> None:
    ours, theirs = both
    mine = ours["add"].s(1)
    assert mine.on_error(ours["tsum"].s()) is mine
    assert mine.link(ours["mul"].s(2)) == ours["mul"].s(2)
    mine.link(ours["mul"].s(2))  # the same callback twice is kept once, as in Celery
    reference = theirs["add"].s(1)
    reference.on_error(theirs["tsum"].s())
    reference.link(theirs["mul"].s(2))
    reference.link(theirs["mul"].s(2))
    assert wire(mine) == wire(reference)


def test_map_and_starmap_signatures_name_celerys_builtins(both) -> None:
    ours, theirs = both
    for method in ("map", "starmap"):
        mine = wire(getattr(ours["add"], method)([[1, 2]]))
        reference = wire(getattr(theirs["add"], method)([[1, 2]]))
        assert mine["task"] == reference["task"] == f"celery.{method}"
        assert mine["kwargs"] == reference["kwargs"]
        assert set(mine) == SIG_KEYS


def test_map_and_starmap_are_immutable_like_celery(both) -> None:
    ours, theirs = both
    assert wire(ours["add"].map([1])) == wire(theirs["add"].map([1]))
    assert wire(ours["add"].starmap([[1, 2]])) == wire(theirs["add"].starmap([[1, 2]]))


def test_chunks_group_is_starmap_tasks(both) -> None:
    ours, theirs = both
    flow = ours["add"].chunks(zip(range(100), range(100), strict=True), 10).group()
    assert isinstance(flow, Group) and len(flow) == 10
    reference = theirs["add"].chunks(zip(range(100), range(100), strict=True), 10).group()
    assert [wire(t) for t in flow.tasks] == [wire(t) for t in reference.tasks]


# -- behaviour of the objects -------------------------------------------------------------------


def test_clone_is_a_deep_independent_copy(both) -> None:
    ours, _ = both
    base = ours["add"].s(2).set(link=[ours["tsum"].s()])
    copy = base.clone((3,), queue="q")
    assert copy["args"] == (3, 2) and copy.options["queue"] == "q"
    copy.options["link"][0]["args"].append(99)
    assert base["args"] == (2,) and "queue" not in base.options
    assert base.options["link"][0]["args"] == ()
    assert ours["add"].si(1, 1).clone((5,))["args"] == (1, 1)  # immutable: partial args ignored
    flow = chain(ours["add"].s(1), ours["mul"].s(2)).clone()
    assert isinstance(flow, Chain) and flow.app is not None


def test_pipes_and_upgrades(both) -> None:
    ours, _ = both
    add, mul, tsum = ours["add"], ours["mul"], ours["tsum"]
    flat = add.s(1) | mul.s(2) | add.s(3)
    assert isinstance(flat, Chain) and [t.name for t in flat.tasks] == ["canvas.add", "canvas.mul", "canvas.add"]
    assert isinstance(group(add.s(1, 1), add.s(2, 2)) | tsum.s(), Chord)
    steps = chain(add.s(1, 1), group(mul.s(2), mul.s(3)), tsum.s())._steps()
    assert [type(s).__name__ for s in steps] == ["Signature", "Chord"]
    assert steps[1].body.name == "canvas.tsum" and len(steps[1].header) == 2


def test_signatures_off_the_wire_become_the_right_classes(both) -> None:
    ours, _ = both
    add, tsum = ours["add"], ours["tsum"]
    # ``Chain`` keeps the steps as given (``chain()`` would fold the group into the chord's body)
    flow = wire(Chain(add.s(1, 1), chord([add.s(1), add.s(2)], tsum.s()), group(add.s(3), add.s(4))))
    sig = maybe_signature(flow)
    assert isinstance(sig, Chain)
    first, middle, last = sig.tasks
    assert type(first) is Signature and isinstance(middle, Chord) and isinstance(last, Group)
    assert middle.body.name == "canvas.tsum" and [t["args"] for t in middle.header] == [[1], [2]]
    assert maybe_signature(None) is None
    assert isinstance(from_dict(wire(add.s(1))), Signature)


# -- what the client publishes, next to a real Celery client --------------------------------------


def _normalise(value: Any, ids: dict[str, str]) -> Any:
    """Replace each uuid with its first-seen order, and drop the per-client ``reply_to``."""
    if isinstance(value, dict):
        return {k: _normalise(v, ids) for k, v in value.items() if k != "reply_to"}
    if isinstance(value, list):
        return [_normalise(v, ids) for v in value]
    if isinstance(value, str) and UUID.fullmatch(value):
        return ids.setdefault(value, f"id{len(ids)}")
    return value


def _drain(client: redis.Redis, key: str = "celery") -> list[protocol.TaskMessage]:
    raws = list(reversed(client.lrange(key, 0, -1)))
    client.delete(key)
    return [protocol.decode(raw, frozenset({"application/json"})) for raw in raws]


@pytest.fixture
def clients(redis_url: str, redis_client: redis.Redis):  # noqa: ANN201
    ours_app, ours = make_ours(redis_url)
    theirs_app, theirs = make_celery(redis_url)
    yield ours, theirs, redis_client
    gc.collect()  # Celery's result handles unsubscribe when collected: settle them while the server is up
    for obj in gc.get_objects():
        if isinstance(obj, CeleryAsyncResult) and obj.app is theirs_app and obj.backend is not None:
            obj.backend.remove_pending_result(obj)
            obj.backend = None
    ours_app.close()
    theirs_app.close()


def test_chain_publishes_like_celery(clients) -> None:
    ours, theirs, client = clients
    reference_result = celery.chain(theirs["add"].s(1, 2), theirs["add"].s(3), theirs["add"].si(100, 200)).apply_async()
    (reference,) = _drain(client)
    result = chain(ours["add"].s(1, 2), ours["add"].s(3), ours["add"].si(100, 200)).apply_async()
    (message,) = _drain(client)
    assert message.embed["chain"][0]["options"]["task_id"] == result.id  # the last step, embedded first
    assert result.parent.id == message.embed["chain"][1]["options"]["task_id"]
    assert result.parent.parent.id == message.id and result.parent.parent.parent is None
    assert reference_result.id == reference.embed["chain"][0]["options"]["task_id"]
    ids_ours: dict[str, str] = {}
    ids_theirs: dict[str, str] = {}
    assert _normalise(message.embed, ids_ours) == _normalise(reference.embed, ids_theirs)
    assert message.args == reference.args == [1, 2]
    for key in ("group", "group_index", "parent_id"):
        assert message.headers[key] == reference.headers[key] is None
    assert message.headers["root_id"] == message.id


def test_chord_publishes_like_celery(clients) -> None:
    ours, theirs, client = clients
    celery.chord([theirs["add"].s(1, 1), theirs["add"].s(2, 2)])(theirs["tsum"].s())
    reference = _drain(client)
    result = chord([ours["add"].s(1, 1), ours["add"].s(2, 2)])(ours["tsum"].s())
    messages = _drain(client)
    assert len(messages) == len(reference) == 2
    group_id = result.parent.id
    assert client.get(f"{group_key(group_id)}.s") == b"2"
    assert 0 < client.ttl(f"{group_key(group_id)}.s") <= 86400
    for index, (mine, theirs_msg) in enumerate(zip(messages, reference, strict=True)):
        assert mine.headers["group"] == group_id and mine.headers["group_index"] == index
        assert theirs_msg.headers["group_index"] == index
        body = mine.embed["chord"]
        assert body["options"]["task_id"] == result.id and body["options"]["group_id"] == group_id
        assert set(body) == SIG_KEYS
        assert _normalise(mine.embed, {}) == _normalise(theirs_msg.embed, {})
    assert [r.id for r in result.parent.results] == [m.id for m in messages]


def test_group_and_trailing_group_ids_are_known_before_sending(clients) -> None:
    ours, _theirs, client = clients
    result = chain(ours["add"].s(1, 1), group(ours["mul"].s(2), ours["mul"].s(3))).apply_async()
    (message,) = _drain(client)
    (embedded,) = message.embed["chain"]
    assert embedded["subtask_type"] == "group"
    assert embedded["options"]["task_id"] == result.id  # a group keeps its own id in task_id, as in Celery
    assert [t["options"]["task_id"] for t in embedded["kwargs"]["tasks"]] == [r.id for r in result.results]
    assert result.parent.id == message.id
    plain = group(ours["add"].s(1, 1), ours["add"].s(2, 2)).apply_async()
    messages = _drain(client)
    assert [m.headers["group"] for m in messages] == [plain.id, plain.id]
    assert [m.headers["group_index"] for m in messages] == [0, 1]
    assert client.exists(group_key(plain.id)) == 0  # no backend key unless saved
