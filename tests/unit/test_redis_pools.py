"""Redis clients' pools: the queue (``FreeSlots``) full from the start, live connections first; the read size."""

from __future__ import annotations

import queue

import pytest
import redis

from engine.redisconn import FreeSlots, client_from_url, with_options


def test_a_new_queue_is_full_of_empty_slots_without_being_filled() -> None:
    slots = FreeSlots(3)
    assert slots.full() and slots.qsize() == 3
    with pytest.raises(queue.Full):  # redis-py's fill loop stops at its first put
        slots.put_nowait(None)
    assert [slots.get_nowait() for _ in range(3)] == [None, None, None]
    with pytest.raises(queue.Empty):  # every slot taken: a caller waits, then gives up
        slots.get(timeout=0.01)


def test_a_connection_handed_back_is_taken_before_an_empty_slot() -> None:
    slots = FreeSlots(3)
    taken = [slots.get_nowait() for _ in range(3)]
    assert taken == [None, None, None]
    slots.put_nowait(None)  # a failed connect gives its slot back
    slots.put_nowait("conn-a")
    slots.put_nowait("conn-b")
    assert slots.queue == ["conn-a", "conn-b"]  # what redis-py reads to disconnect them
    assert [slots.get_nowait(), slots.get_nowait(), slots.get_nowait()] == ["conn-b", "conn-a", None]


def test_a_client_at_its_limit_reuses_its_connections(redis_url: str) -> None:
    client = client_from_url(with_options(redis_url, max_connections=2))
    pool = client.connection_pool
    try:
        first, second = pool.get_connection(), pool.get_connection()
        with pytest.raises(redis.ConnectionError):  # a third caller waits its timeout, then fails
            pool.timeout = 0.05
            pool.get_connection()
        pool.release(first)
        pool.release(second)
        assert client.ping()
        assert {id(c) for c in pool._connections} == {id(first), id(second)}  # nothing new opened
    finally:
        client.close()


def test_a_reply_many_times_the_read_buffer_arrives_whole(redis_url: str) -> None:
    """Connections read 16 KB at a time (``READ_SIZE``); a 1 MB value still comes back intact."""
    client = client_from_url(redis_url)
    try:
        value = bytes(range(256)) * 4096
        client.set("tqctl.test.big", value)
        assert client.get("tqctl.test.big") == value
        assert client.connection_pool.connection_kwargs["socket_read_size"] == 16 * 1024
    finally:
        client.delete("tqctl.test.big")
        client.close()
