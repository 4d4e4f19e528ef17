"""examples/fastapi run for real: the ASGI app in this process, a ``tqctl worker`` process.

The awaited endpoint must not hold the event loop while it waits: a request that waits for a
worker that has not started yet leaves the loop free for other requests, and completes once the
worker starts.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from types import ModuleType

import pytest
import redis

from tests.integration.harness import ROOT, WorkerProcess, wait_for

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

EXAMPLE = ROOT / "examples" / "fastapi"


@pytest.fixture
def example(broker_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from fastapi_shop import main, tasks

    tasks.app.close()
    tasks.app.conf.broker_url = tasks.app.conf.result_backend = broker_url
    try:
        yield main
    finally:
        tasks.app.close()
        for name in [n for n in sys.modules if n == "fastapi_shop" or n.startswith("fastapi_shop.")]:
            del sys.modules[name]


@pytest.fixture
def start_example_worker(broker_url: str, tmp_path: Path) -> Iterator[Callable[[], WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        env = {"PYTHONPATH": os.pathsep.join([str(EXAMPLE), str(ROOT)])}
        argv = ["-P", "threads", "-c", "4", "-n", "fastapi@%h", "-l", "info"]
        started.append(WorkerProcess(broker_url, argv, tmp_path / "w.log", env, app="fastapi_shop.tasks"))
        return started[-1].wait_ready(60)

    yield start
    for worker in started:
        worker.close()


def client(example: ModuleType) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=example.api), base_url="http://shop", timeout=120)


def test_async_endpoint_awaits_the_result_without_blocking_the_loop(
    example: ModuleType, start_example_worker: Callable[[], WorkerProcess], redis_client: redis.Redis
) -> None:
    async def scenario() -> tuple[httpx.Response, httpx.Response, bool]:
        async with client(example) as http:
            waiting = asyncio.create_task(http.post("/quotes", json={"item": "book", "quantity": 3}))
            queued = partial(wait_for, lambda: redis_client.llen("celery") == 1, 30, "the quote queued")
            await asyncio.to_thread(queued)  # the endpoint has sent it and now waits for the result
            health = await http.get("/healthz")  # served meanwhile: the loop is not held
            pending_meanwhile = not waiting.done()
            await asyncio.to_thread(start_example_worker)
            return await waiting, health, pending_meanwhile

    quote, health, pending_meanwhile = asyncio.run(scenario())
    assert health.json() == {"status": "ok"} and pending_meanwhile
    assert quote.status_code == 200
    assert quote.json() == {"task_id": quote.json()["task_id"], "item": "book", "quantity": 3, "total": 37.5}


def test_failure_and_queued_quote(example: ModuleType, start_example_worker: Callable[[], WorkerProcess]) -> None:
    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with client(example) as http:
            refused = await http.post("/quotes", json={"item": "unicorn"})
            task_id = (await http.post("/quotes/later", json={"item": "pen", "quantity": 4})).json()["task_id"]
            await asyncio.to_thread(example.tasks_app.AsyncResult(task_id).get, timeout=30)
            failed_id = (await http.post("/quotes/later", json={"item": "unicorn"})).json()["task_id"]
            await asyncio.to_thread(example.tasks_app.AsyncResult(failed_id).get, timeout=30, propagate=False)
            failed = await http.get(f"/quotes/{failed_id}")
            return refused, await http.get(f"/quotes/{task_id}"), failed

    start_example_worker()
    refused, status, failed = asyncio.run(scenario())
    assert (refused.status_code, refused.json()) == (422, {"detail": "no price for 'unicorn'"})
    assert failed.json() == {  # polled: the reason, not just the state
        "task_id": failed.json()["task_id"],
        "state": "FAILURE",
        "result": None,
        "error": "no price for 'unicorn'",
    }
    assert status.json() == {
        "task_id": status.json()["task_id"],
        "state": "SUCCESS",
        "result": {"item": "pen", "quantity": 4, "total": 5.0},
    }
