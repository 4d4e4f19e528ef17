"""The engine's own Redis client (``engine.resp``) against a real server: reply shapes, pipelines
and transactions, scripts a server forgot, connections the server cut, subscriptions, forks."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from engine import resp
from engine.redisconn import client_from_url
from tests.integration.harness import wait_for


@pytest.fixture
def client(redis_url: str, redis_client: resp.Client) -> Iterator[resp.Client]:
    made = client_from_url(redis_url)
    try:
        yield made
    finally:
        made.close()


def test_replies_come_in_the_shapes_callers_use(client: resp.Client) -> None:
    assert client.set("k", "v", ex=30) is True and client.get("k") == b"v"
    assert client.set("k", "w", nx=True) is None and client.get("k") == b"v"
    client.hset("h", mapping={"a": 1, "b": "é"})
    assert client.hgetall("h") == {b"a": b"1", b"b": "é".encode()}
    client.zadd("z", {"m1": 1.5, "m2": 2})
    assert client.zrange("z", 0, -1, withscores=True) == [(b"m1", 1.5), (b"m2", 2.0)]
    assert client.zmscore("z", ["m2", "nope"]) == [2.0, None]
    assert sorted(client.scan_iter(match="[hz]")) == [b"h", b"z"]
    info = client.info("server")
    assert isinstance(info["redis_version"], str) and isinstance(info["process_id"], int)
    assert client.expire("k", 10) is True and 0 < client.ttl("k") <= 10


def test_an_error_reply_is_raised_and_the_connection_stays_in_step(client: resp.Client) -> None:
    client.set("s", "x")
    with pytest.raises(resp.ResponseError, match="WRONGTYPE"):
        client.lpush("s", "y")
    pipe = client.pipeline(transaction=False)
    pipe.lpush("s", "y").get("s")
    refused, value = pipe.execute(raise_on_error=False)
    assert isinstance(refused, resp.ResponseError) and value == b"x"
    assert client.get("s") == b"x"


def test_a_transaction_runs_whole_or_not_at_all(client: resp.Client) -> None:
    with client.pipeline() as pipe:
        pipe.incr("n").incr("n").get("n")
        assert pipe.execute() == [1, 2, b"2"]
    pipe = client.pipeline()
    pipe.incr("n").execute_command("NO-SUCH-COMMAND")
    with pytest.raises(resp.ResponseError, match="unknown command"):
        pipe.execute()
    assert client.get("n") == b"2"  # EXEC was refused: the first INCR never ran


def test_a_script_the_server_forgot_is_loaded_again(client: resp.Client, redis_client: resp.Client) -> None:
    script = client.register_script("return {KEYS[1], ARGV[1]}")
    assert script(keys=["a"], args=["b"]) == [b"a", b"b"]
    redis_client.script_flush()
    assert script(keys=["c"], args=["d"]) == [b"c", b"d"]


def test_a_connection_the_server_cut_is_replaced_and_the_command_still_runs(
    client: resp.Client, redis_client: resp.Client
) -> None:
    client.set("k", "1")
    mine = {c["id"] for c in redis_client.client_list()} - {str(redis_client.client_id())}
    for number in mine:
        redis_client.client_kill_filter(_id=number)
    assert client.incr("k") == 2  # once, not twice: the INCR never reached the server the first time


def test_a_subscriber_cut_off_subscribes_again_and_hears_what_comes_next(
    client: resp.Client, redis_client: resp.Client
) -> None:
    listener = client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe("ch")
    wait_for(lambda: redis_client.execute_command("PUBSUB", "NUMSUB", "ch")[1] == 1, 5, "the subscription")
    redis_client.client_kill_filter(_type="pubsub")
    assert listener.get_message(timeout=0.5) is None  # the cut is found, the subscription made again
    wait_for(lambda: redis_client.execute_command("PUBSUB", "NUMSUB", "ch")[1] == 1, 5, "the new subscription")
    redis_client.publish("ch", "after")
    message = listener.get_message(timeout=5)
    listener.close()
    assert message is not None and message["data"] == b"after"


def test_a_forked_child_opens_its_own_connection(client: resp.Client) -> None:
    parent_id = client.client_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.write(write, str(client.client_id()).encode())
        finally:
            os._exit(0)
    os.close(write)
    child_id = int(os.read(read, 64))
    os.waitpid(pid, 0)
    os.close(read)
    assert child_id != parent_id
    assert client.client_id() == parent_id  # the parent's connection was left alone


def test_decode_responses_in_the_url_gives_str_replies(redis_url: str, redis_client: resp.Client) -> None:
    """Celery's ``?decode_responses=true`` on a result backend URL (its own integration suite)."""
    separator = "&" if "?" in redis_url else "?"
    decoding = client_from_url(f"{redis_url}{separator}decode_responses=true")
    try:
        decoding.set("k", "é")
        assert decoding.get("k") == "é" and redis_client.get("k") == "é".encode()
    finally:
        decoding.close()
