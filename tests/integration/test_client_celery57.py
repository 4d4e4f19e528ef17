"""Our client as Celery 5.7's, against a real server and worker: what Celery's own integration suite
(test_tasks.py in modes b and c) found different. Result subscriptions as Celery's client keeps
them, ``ignore_result`` handles, ``backend.store_result``, message properties, and control replies
waited on for longer than a socket timeout.
"""

from __future__ import annotations

import gc
import threading
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
import redis

from engine import states
from engine.broker.fanout import RedisFanout
from engine.protocol.results import task_key
from engine.redisconn import as_text, client_from_url
from tests.integration.conftest import client_app
from tests.integration.harness import wait_for

pytestmark = pytest.mark.integration
API = "tests.apps.api"


@pytest.fixture
def api(broker_url: str) -> Iterator[ModuleType]:
    yield from client_app(API, broker_url)


def channels(client: redis.Redis) -> set[str]:
    return {as_text(c) for c in client.pubsub_channels("celery-task-meta-*")}


def where(client: redis.Redis | None) -> dict[str, Any] | None:
    if client is None:
        return None
    settings = client.connection_pool.settings
    return {"path": settings.path} if settings.path else {"host": settings.host, "port": settings.port}


def channels_become(client: redis.Redis, expected: set[str], api: Any, among: set[str]) -> None:
    """A SUBSCRIBE is not waited for (as Celery's): the server may take a moment to count it.
    ``among``: the result channels of this test's own tasks, the only ones looked at. The server
    is shared by the test files an xdist worker runs, and a real Celery client of an earlier file
    can still be subscribed to a result it never read (CI on 358da98: one such channel failed
    two tests here). On a timeout it says what this process and the server each see."""
    try:
        wait_for(lambda: channels(client) & among == expected, 10, f"result channels {expected}")
    except AssertionError as exc:
        seen: dict[str, Any] = {}
        try:
            seen["server"] = sorted(channels(client))
            seen["server at"] = where(client)
            seen["subscribers"] = [c for c in client.client_list() if int(c.get("sub", 0))]
            if api is not None:
                backend = api.app.backend
                seen["backend"] = type(backend).__name__
                seen["backend at"] = where(getattr(backend, "client", None))
                seen["subscribed here"] = sorted(backend.result_consumer.channels)
        except Exception as why:  # noqa: BLE001 - the timeout is the failure; this only explains it
            seen["could not look further"] = repr(why)
        raise AssertionError(f"{exc}; {seen}") from None


def test_a_sent_task_is_listened_for_until_its_result_is_read_forgotten_or_dropped(
    api: Any, start_worker: Any, redis_client: redis.Redis
) -> None:
    """Celery's client subscribes to a result's channel when it sends the task, and unsubscribes
    once ``get`` has it, on ``forget``, or when the ``AsyncResult`` is dropped."""
    forgotten = api.add.delay(1, 1)
    dropped = api.add.delay(2, 2)
    sent = {task_key(forgotten.id), task_key(dropped.id)}
    channels_become(redis_client, set(sent), api, sent)
    forgotten.forget()
    del dropped
    gc.collect()
    read = api.add.delay(3, 3)
    sent.add(task_key(read.id))
    channels_become(redis_client, {task_key(read.id)}, api, sent)
    start_worker("-P", "threads", "-c", "2", app=API)
    assert read.get(timeout=30) == 6
    channels_become(redis_client, set(), api, sent)
    # a result nobody holds is still there to read later: the subscription was only for waiting
    again = api.app.AsyncResult(read.id)
    assert again.get(timeout=5) == 6
    channels_become(redis_client, set(), api, sent)


def test_an_ignored_result_is_not_listened_for_and_get_returns_none_at_once(
    api: Any, redis_client: redis.Redis
) -> None:
    result = api.add.apply_async((1, 2), ignore_result=True)  # no worker: nothing will ever be stored
    assert result.ignored is True
    assert result.get(timeout=30) is None
    sentinel = api.add.delay(1, 2)  # subscribed after the ignored one would have been
    assert sentinel.ignored is False
    channels_become(redis_client, {task_key(sentinel.id)}, api, {task_key(result.id), task_key(sentinel.id)})


def test_threads_waiting_at_once_share_one_connection_and_all_get_their_results(
    api: Any, start_worker: Any, redis_client: redis.Redis
) -> None:
    earlier = {c["id"] for c in redis_client.client_list()}  # an earlier file's clients (see channels_become)
    results = [api.add.delay(i, i) for i in range(12)]
    start_worker("-P", "threads", "-c", "4", app=API)
    got: dict[str, Any] = {}

    def collect(result: Any) -> None:
        try:
            got[result.id] = result.get(timeout=60)
        except Exception as exc:  # noqa: BLE001 - the assertion below reports it
            got[result.id] = exc

    threads = [threading.Thread(target=collect, args=(r,)) for r in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == {r.id: 2 * i for i, r in enumerate(results)}
    channels_become(redis_client, set(), api, {task_key(r.id) for r in results})
    subscribers = [c for c in redis_client.client_list() if int(c.get("sub", 0)) and c["id"] not in earlier]
    assert len(subscribers) <= 1  # one pub/sub connection for every waiting thread


def test_backend_store_result_and_get_state_as_celerys(api: Any, redis_client: redis.Redis) -> None:
    backend = api.app.backend
    task_id = str(uuid.uuid4())
    backend.store_result(task_id, {"hostname": "other@host"}, "PROGRESS")
    assert backend.get_state(task_id) == "PROGRESS"
    assert api.app.AsyncResult(task_id).info == {"hostname": "other@host"}
    assert backend.get_state(str(uuid.uuid4())) == states.PENDING
    failed = str(uuid.uuid4())
    backend.store_result(failed, ValueError("boom"), states.FAILURE, traceback="tb")
    assert isinstance(backend.get_result(failed), ValueError) and backend.get_traceback(failed) == "tb"
    with pytest.raises(ValueError, match="boom"):
        api.app.AsyncResult(failed).get(timeout=5)
    # a stored SUCCESS is final, as in Celery: a late writer cannot undo it
    done = str(uuid.uuid4())
    backend.store_result(done, 7, states.SUCCESS)
    backend.store_result(done, None, states.STARTED)
    assert backend.get_task_meta(done)["status"] == states.SUCCESS
    assert api.app.AsyncResult(done).get(timeout=5) == 7


def test_app_id_given_to_apply_async_is_in_the_tasks_request_properties(api: Any, start_worker: Any) -> None:
    start_worker("-P", "threads", "-c", "1", app=API)
    properties = api.request_properties.apply_async(app_id="1234").get(timeout=30)
    assert properties["app_id"] == "1234"


def test_a_reply_waited_on_longer_than_the_socket_timeout_is_waited_for(redis_url: str) -> None:
    """``control.revoke(..., reply=True, timeout=10)`` waited with one BRPOP longer than redis-py's
    5 s socket timeout, and raised ``TimeoutError`` instead of returning what came."""
    client = client_from_url(redis_url, socket_timeout=0.5)
    fanout = RedisFanout(redis_url, client=client)
    try:
        queue = fanout.bind_reply("oid-1")
        assert fanout.pop_reply(queue, 1.2) is None
        fanout.reply("oid-1", b"late")
        assert fanout.pop_reply(queue, 1.2) == b"late"
    finally:
        fanout.unbind_reply("oid-1")
        fanout.close()


def test_the_result_consumer_answers_to_celerys_names(api: Any, redis_client: redis.Redis) -> None:
    """Code (and Celery's test_redis_backend.py) drives ``backend.result_consumer`` by Celery's
    names; a ready result that nobody waits for ends its subscription when drained."""
    consumer = api.app.backend.result_consumer
    task_id = str(uuid.uuid4())
    consumer.consume_from(task_id)
    assert consumer.subscribed_to == {consumer._get_key_for_task(task_id)}
    channels_become(redis_client, {task_key(task_id)}, api, {task_key(task_id)})
    api.app.backend.store_result(task_id, 1, states.SUCCESS)  # stored and published

    def drained() -> bool:
        consumer.drain_events(timeout=0.1)
        return not consumer.subscribed_to

    wait_for(drained, 10, "the subscription to end once its result was heard")
    channels_become(redis_client, set(), api, {task_key(task_id)})
    assert api.app.AsyncResult(task_id).get(timeout=5) == 1
    consumer.stop()
