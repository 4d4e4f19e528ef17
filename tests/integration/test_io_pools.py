"""I/O-bound work on real workers: high concurrency keeps every result, ``async def`` tasks run on
every pool, and the asyncio and gevent pools (issue 15)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

from tests.integration.conftest import client_app
from tests.integration.harness import WorkerProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def aio(broker_url: str) -> Iterator[ModuleType]:
    yield from client_app("tests.apps.aio", broker_url)


def _worker(start_worker: Callable[..., WorkerProcess], *args: str, **kw: object) -> WorkerProcess:
    return start_worker(*args, app="tests.apps.aio", **kw)


def test_threads_at_c200_keep_every_result_of_a_burst(
    aio: ModuleType, start_worker: Callable[..., WorkerProcess]
) -> None:
    """The report: -P threads -c 200 logged MaxConnectionsError storing results and lost most of a
    burst. Every one of 400 results must come back, and nothing about connections in the log."""
    worker = _worker(start_worker, "-P", "threads", "-c", "200")
    results = [aio.nap.delay(0.3, i) for i in range(400)]
    assert [r.get(timeout=60) for r in results] == list(range(400))
    assert "Too many connections" not in worker.log()
    assert "MaxConnectionsError" not in worker.log()


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_async_def_tasks_run_to_completion_on_every_pool(
    pool: str, aio: ModuleType, start_worker: Callable[..., WorkerProcess]
) -> None:
    _worker(start_worker, "-P", pool, "-c", "2")
    done = aio.whoami.delay()
    assert done.get(timeout=30)["id"] == done.id  # the request is visible inside the coroutine
    assert [r.get(timeout=30) for r in [aio.anap.delay(0.05, i) for i in range(6)]] == list(range(6))
    with pytest.raises(ValueError, match="async boom"):
        aio.aboom.delay("async boom").get(timeout=30)
    assert aio.aflaky.delay(2).get(timeout=30) == 2  # retried twice with a countdown, then succeeded
    assert aio.asoft.delay(10).get(timeout=30) == "caught soft"  # raised inside the coroutine
