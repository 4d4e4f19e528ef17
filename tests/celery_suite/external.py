"""The session worker fixture both trees use: the worker is a separate process the runner started.

Celery's own fixture starts a worker thread inside the test process; here the worker under test
(ours or Celery's) runs as its own process, as in production, so the fixture only checks that it
answers before the first test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis


@pytest.fixture(scope="session")
def celery_session_worker() -> Iterator[None]:
    url = os.environ["TEST_BROKER"]
    with redis.Redis.from_url(url) as client:
        client.ping()
    yield None
