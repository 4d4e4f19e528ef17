"""Redis clients' pools: a full pool makes a caller wait, connections handed back are reused; the read size."""

from __future__ import annotations

import pytest

from engine import resp
from engine.redisconn import READ_SIZE, client_from_url, with_options


def test_a_client_at_its_limit_reuses_its_connections(redis_url: str) -> None:
    client = client_from_url(with_options(redis_url, max_connections=2))
    pool = client.connection_pool
    try:
        first, second = pool.get(), pool.get()
        pool.timeout = 0.05
        with pytest.raises(resp.ConnectionError, match="No connection available"):  # waits, then fails
            pool.get()
        pool.release(first)
        pool.release(second)
        assert client.ping()
        assert {id(pool.get()), id(pool.get())} == {id(first), id(second)}  # nothing new opened
    finally:
        client.close()


def test_a_reply_many_times_the_read_buffer_arrives_whole(redis_url: str) -> None:
    """Connections read 16 KB at a time (``READ_SIZE``); a 1 MB value still comes back intact."""
    client = client_from_url(redis_url)
    try:
        value = bytes(range(256)) * 4096
        client.set("tqctl.test.big", value)
        assert client.get("tqctl.test.big") == value
        assert client.connection_pool.settings.read_size == READ_SIZE == 16 * 1024
    finally:
        client.delete("tqctl.test.big")
        client.close()
