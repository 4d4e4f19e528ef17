"""Shared pytest fixtures.

Layout: the real-server part comes first (one private Redis-compatible server per session, from
``engine.bundled``). Other engineers add their fixtures below it, each part small and self-contained.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from engine.bundled import client_for, start_private

# -- real server ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One private server (unix socket) for the session; stopped at the end, never shared."""
    with start_private(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the session server, emptied first so tests never see each other's keys."""
    client = client_for(redis_url, timeout=None)
    client.flushall()
    try:
        yield client
    finally:
        client.close()
