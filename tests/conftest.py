"""Shared pytest fixtures.

Layout: the real-server part comes first (one private Redis-compatible server per session, from
``engine.bundled``). Other engineers add their fixtures below it, each part small and self-contained.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from engine import bundled
from engine.bundled import client_for, start_private

# -- real server ----------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def bundled_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Anything that falls back to the bundled broker (a command run without ``--broker``, an app
    with none) starts it in a temporary folder, never in the checkout, and it is stopped at the end."""
    path = str(tmp_path_factory.mktemp("bundled-state"))
    before = os.environ.get("TQCTL_STATE_DIR")
    os.environ["TQCTL_STATE_DIR"] = path  # inherited by every worker and CLI process a test starts
    yield path
    bundled.stop(path)
    if before is None:
        os.environ.pop("TQCTL_STATE_DIR", None)
    else:
        os.environ["TQCTL_STATE_DIR"] = before


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
