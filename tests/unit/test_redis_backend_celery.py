"""Celery 5.7's ``RedisBackend`` calls on our backend, against a real server (Celery's own
``t/integration/test_redis_backend.py`` uses them): failure and chord lifetimes from the app's
settings, the chord calls a client or a hand-built request makes, and ``Context``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from engine import App, states
from engine.backend.redis import RedisBackend
from engine.group_result import GroupResult
from engine.protocol.task import new_id
from engine.result import AsyncResult
from engine.signals import before_task_publish
from engine.task import Context


@pytest.fixture
def make_app(redis_url: str, redis_client: redis.Redis) -> Iterator[Any]:
    apps: list[App] = []

    def make(**conf: Any) -> App:
        app = App("unit-redis-backend", broker=redis_url, backend=redis_url, **conf)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def _backend(app: App) -> RedisBackend:
    backend = app.backend
    assert isinstance(backend, RedisBackend)
    return backend


def test_a_failure_is_kept_for_result_failure_expires(make_app: Any) -> None:
    backend = _backend(make_app(result_expires=60, result_failure_expires=600))
    ok, failed = new_id(), new_id()
    backend.store_result(ok, 42, states.SUCCESS)
    backend.store_result(failed, KeyError("x"), states.FAILURE)
    assert 0 < backend.client.ttl(backend.get_key_for_task(ok)) <= 60
    assert 60 < backend.client.ttl(backend.get_key_for_task(failed)) <= 600
    assert backend.compression is None  # stored as plain JSON, whatever result_compression says


def test_chord_keys_live_for_result_chord_expires(make_app: Any) -> None:
    app = make_app(result_expires=60, result_chord_expires=600)
    backend = _backend(app)
    group_id = new_id()
    header = GroupResult(group_id, [GroupResult(new_id(), [AsyncResult(new_id(), app)], app=app)], app=app)
    request = SimpleNamespace(id=new_id(), group=group_id, group_index=0, chord=None)
    backend.apply_chord((group_id, header.results), None)
    backend.set_chord_size(group_id, 2)
    backend.on_chord_part_return(request, states.SUCCESS, 1)  # one of two: recorded, nothing starts
    for suffix in ("", ".j", ".s", ".d"):
        assert 60 < backend.client.ttl(backend.get_key_for_group(group_id, suffix)) <= 600
    assert GroupResult.restore(group_id, backend=backend) == header


@pytest.mark.parametrize("ordered", [True, False])
def test_on_chord_part_return_counts_each_header_once_and_starts_the_body(make_app: Any, ordered: bool) -> None:
    app = make_app(result_backend_transport_options={"result_chord_ordered": ordered})
    identity = app.task(name="unit.identity")(lambda value: value)
    backend = _backend(app)
    group_id, body = new_id(), identity.s()
    body_id = body.freeze().id
    ids = [new_id() for _ in range(3)]
    sent: list[Any] = []

    def capture(sender: Any = None, body: Any = None, headers: Any = None, **_: Any) -> None:
        sent.append((headers["id"], json.loads(json.dumps(body))[0]))

    def part_return(index: int, value: int) -> None:
        request = Context(id=ids[index], group=group_id, group_index=index, chord=body)
        backend.on_chord_part_return(request, states.SUCCESS, value)

    join_key = backend.get_key_for_group(group_id, ".j")
    count = backend.client.zcard if ordered else backend.client.llen
    backend.set_chord_size(group_id, 3)
    before_task_publish.connect(capture, weak=False)
    try:
        part_return(0, 1)
        part_return(0, 42)  # the same header task again (redelivered): still one part
        assert count(join_key) == 1
        part_return(1, 2)
        assert sent == []
        part_return(2, 3)
    finally:
        before_task_publish.disconnect(capture)
    assert sent == [(body_id, [[1, 2, 3]])]
    keys = [backend.get_key_for_group(group_id, s) for s in (".j", ".t", ".s", ".d")]
    assert backend.client.exists(*keys) == 0


def test_context_is_a_request_built_by_hand() -> None:
    ctx = Context({"id": "a", "group": "g"}, group_index=2, custom="x")
    assert (ctx.id, ctx.group, ctx.group_index, ctx.custom, ctx.get("chord")) == ("a", "g", 2, "x", None)
    assert not ctx.is_eager


@pytest.mark.parametrize("result_expires", [3600, None])
def test_a_stored_result_is_set_with_its_lifetime_and_published(
    make_app: Any, redis_client: redis.Redis, result_expires: int | None
) -> None:
    """The store is packed by hand (``_set_and_publish``): the value, its lifetime and the
    message a waiting client hears must be what redis-py's own commands would have written, for
    a task id of any text (a client may choose its own)."""
    backend = _backend(make_app(result_expires=result_expires))
    task_id = f"{new_id()}-café"
    meta = {"status": states.SUCCESS, "result": "café ☕ " * 40, "task_id": task_id}
    key = f"celery-task-meta-{task_id}"
    listener = redis_client.pubsub()
    listener.subscribe(key)
    assert listener.get_message(timeout=5)["type"] == "subscribe"
    backend.store(task_id, meta)
    heard = listener.get_message(timeout=5)
    listener.close()
    assert json.loads(redis_client.get(key)) == meta
    assert json.loads(heard["data"]) == meta
    ttl = redis_client.ttl(key)
    assert (3590 < ttl <= 3600) if result_expires else ttl == -1
