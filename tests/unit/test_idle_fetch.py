"""An idle worker's fetch: the BLMOVE that blocks and the FETCH that records what it moved go out
in one write, so the server runs the FETCH as soon as a message arrives (real Redis)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from engine.broker.base import Delivery
from engine.broker.redis import INFLIGHT, SEP, STAGE, STAGES, RedisBroker


def _blocked_on_blmove(client: redis.Redis) -> bool:
    return any(c.get("cmd") == "blmove" for c in client.client_list())


def _wait_until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def _fetch_in_thread(broker: RedisBroker, owner: str, queue: str) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(broker.fetch(owner, [queue], 4, 10.0))
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_a_message_sent_to_an_idle_worker_comes_back_recorded_in_flight(
    redis_url: str, redis_client: redis.Redis
) -> None:
    broker = RedisBroker(redis_url)
    try:
        thread, out = _fetch_in_thread(broker, "idle@h.1", "idle.q")
        _wait_until(lambda: _blocked_on_blmove(redis_client))
        redis_client.lpush("idle.q", b"the message")
        thread.join(10)
        [got] = out
        assert isinstance(got, list) and [d.raw for d in got] == [b"the message"]
        [delivery] = got
        assert isinstance(delivery, Delivery)
        assert redis_client.hget(INFLIGHT + "idle@h.1", delivery.tag) == b"idle.q\x1fthe message"
        assert redis_client.llen("idle.q") == 0
        assert broker.fetch("idle@h.1", ["idle.q"], 4, 0) == []  # the connection is in step
    finally:
        broker.close()


def test_a_script_the_server_forgot_while_the_worker_waited_is_loaded_again(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A server restarted (or SCRIPT FLUSHed) while an idle worker blocked: the FETCH sent behind
    the block meets NOSCRIPT; the script is loaded again and the message still comes back."""
    broker = RedisBroker(redis_url)
    try:
        thread, out = _fetch_in_thread(broker, "idle@h.2", "forgot.q")
        _wait_until(lambda: _blocked_on_blmove(redis_client))
        redis_client.script_flush()
        redis_client.lpush("forgot.q", b"still here")
        thread.join(10)
        [got] = out
        assert isinstance(got, list) and [d.raw for d in got] == [b"still here"]
        assert redis_client.hlen(INFLIGHT + "idle@h.2") == 1
    finally:
        broker.close()


def _fetches(client: redis.Redis) -> int:
    """FETCH scripts the server has run so far (every fetch is one EVALSHA)."""
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def test_a_worker_idle_between_tasks_blocks_at_once_and_its_staging_list_is_armed_first(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """After a fetch that came back short, the next idle fetch does not FETCH first (it would find
    nothing, a round trip a task at a steady trickle): it blocks at once, its staging list named
    in the owner's set in the same write, so a reaper still finds what the block moves even when
    the set was emptied in between (a reap while the worker looked dead)."""
    owner = "idle@h.3"
    broker = RedisBroker(redis_url)
    try:
        assert broker.fetch(owner, ["trickle.q"], 4, 0.01) == []  # idle: came back short
        redis_client.delete(STAGES + owner)
        before = _fetches(redis_client)
        thread, out = _fetch_in_thread(broker, owner, "trickle.q")
        _wait_until(lambda: _blocked_on_blmove(redis_client))
        assert redis_client.smembers(STAGES + owner) == {(STAGE + owner + SEP + "trickle.q").encode()}
        redis_client.lpush("trickle.q", b"one task")
        thread.join(10)
        [got] = out
        assert isinstance(got, list) and [d.raw for d in got] == [b"one task"]
        assert _fetches(redis_client) - before == 1  # the FETCH behind the block, and no other
        assert redis_client.hlen(INFLIGHT + owner) == 1
    finally:
        broker.close()
