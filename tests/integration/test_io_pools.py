"""I/O-bound work on real workers: high concurrency keeps every result, ``async def`` tasks run on
every pool, and the asyncio and gevent pools (issue 15)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import redis

from engine.exceptions import TaskRevokedError, TimeLimitExceeded
from engine.exceptions import TimeoutError as ResultTimeout
from engine.redisconn import client_from_url, with_options
from tests.integration.conftest import client_app
from tests.integration.harness import ROOT, WorkerProcess, wait_for
from tqctl.io_bench import SlowHTTP

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


def test_a_client_serves_150_callers_at_once(broker_url: str) -> None:
    """A pool capped at 100 connections (redis-py 8's default) raised MaxConnectionsError past them."""
    client = client_from_url(broker_url)
    held = [client.connection_pool.get() for _ in range(150)]
    try:
        assert client.ping()
    finally:
        for conn in held:
            client.connection_pool.release(conn)
        client.close()


def test_a_full_connection_pool_waits_for_a_connection(broker_url: str) -> None:
    """At its limit (``redis_max_connections``) the pool waits for a connection to come back."""
    client = client_from_url(with_options(broker_url, max_connections=1))
    held = client.connection_pool.get()
    giver = threading.Timer(0.3, client.connection_pool.release, [held])
    giver.start()
    try:
        assert client.ping()  # waited for the held connection rather than failing
    finally:
        giver.join()
        client.close()


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


def test_a_prefork_child_holds_no_module_only_another_pool_or_the_cli_needs(
    shop: ModuleType, start_worker: Callable[..., WorkerProcess]
) -> None:
    """Each module a worker imports is memory in every process of its tree: greenlet (the asyncio
    pool's; it maps libstdc++), decimal and the CLI's Typer. (ctypes is every pool's now: an idle
    process's ``malloc_trim``, ``engine.worker.trim``, loaded once in the parent before the fork,
    about 0.2 MB of the tree against the 1.5-2 MB the trims give back.) Nor what only an unusual
    setting needs: difflib (a misspelt setting's hint), zoneinfo (a named time zone), pprint
    (``conf.humanize``), the Django fix-up (a Django project)."""
    start_worker("-P", "prefork", "-c", "1")
    unneeded = ["greenlet", "decimal", "typer", "tqctl.cli", "difflib", "zoneinfo", "pprint", "engine.fixups.django"]
    assert shop.loaded.delay(unneeded).get(timeout=30) == []


# -- the asyncio pool ------------------------------------------------------------------------


@pytest.fixture
def slow_http() -> Iterator[SlowHTTP]:
    server = SlowHTTP()
    yield server
    server.close()


def _results(client: redis.Redis, ids: list[str], timeout: float) -> list[dict[str, object]]:
    """Every stored result of ``ids``, waiting until all are there. Counted with EXISTS and parsed
    once: parsing thousands of results ten times a second would slow the HTTP server in this process."""
    keys = [f"celery-task-meta-{i}" for i in ids]
    wait_for(lambda: client.exists(*keys) == len(keys), timeout, f"{len(ids)} results", interval=0.1)
    return [json.loads(v) for v in client.mget(keys)]


def test_asyncio_pool_runs_2000_http_waits_at_c1000(
    aio: ModuleType, slow_http: SlowHTTP, redis_client: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    """The issue's check: 2,000 tasks each waiting 0.5 s on a local HTTP server, -P asyncio -c 1000.
    The time is printed (run with -s), not asserted; every result must come back."""
    _worker(start_worker, "-P", "asyncio", "-c", "1000", env={"AIO_HTTP": slow_http.url})
    started = time.monotonic()
    sent = aio.app.send_many(aio.afetch.name, [((i,), None) for i in range(2000)])
    metas = _results(redis_client, [r.id for r in sent], 120)
    elapsed = time.monotonic() - started
    print(f"\n-P asyncio -c 1000: 2000 x 0.5 s HTTP waits in {elapsed:.2f}s ({2000 / elapsed:.0f} tasks/s)")
    assert sorted(m["result"] for m in metas) == list(range(2000))  # type: ignore[type-var]
    assert slow_http.served == 2000


def test_asyncio_pool_limits_retries_revoke_and_sync_tasks(
    aio: ModuleType, ledger: Path, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = _worker(start_worker, "-P", "asyncio", "-c", "50")
    running = aio.alongrun.delay(60)
    wait_for(lambda: f"start {running.id}" in ledger.read_text(), 30, "the long coroutine to start")
    info = aio.whoami.delay().get(timeout=30)
    assert info["loop"].startswith("uvloop")  # the same loop serves other tasks meanwhile
    assert aio.nap.delay(0.1, 7).get(timeout=30) == 7  # a plain def task runs in the thread pool
    assert aio.asoft.delay(10).get(timeout=30) == "caught soft"
    with pytest.raises(TimeLimitExceeded):
        aio.ahard.delay(10).get(timeout=30)
    assert aio.aflaky.delay(2).get(timeout=30) == 2
    with pytest.raises(ValueError, match="bad"):
        aio.aboom.delay("bad").get(timeout=30)
    aio.app.control.revoke(running.id, terminate=True)
    with pytest.raises(TaskRevokedError):
        running.get(timeout=30)
    text = ledger.read_text()
    assert f"cancelled {running.id}" in text  # the coroutine itself saw the cancellation
    assert text.count("cleanup") == 1  # the hard limit cancelled ahard: its finally ran
    assert "Traceback" not in worker.log().split("ahard")[0]


def test_asyncio_pool_sigkill_with_acks_late_loses_nothing(
    aio: ModuleType, ledger: Path, redis_client: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    first = _worker(start_worker, "-P", "asyncio", "-c", "100", name="first")
    sent = aio.app.send_many(aio.alate.name, [((2.0, i), None) for i in range(200)])
    wait_for(lambda: ledger.read_text().count("start ") >= 100, 30, "a hundred tasks in flight")
    first.kill_group()  # SIGKILL, mid-run
    _worker(start_worker, "-P", "asyncio", "-c", "200", name="second")
    metas = _results(redis_client, [r.id for r in sent], 90)
    assert sorted(m["result"] for m in metas) == list(range(200))  # type: ignore[type-var]


# -- the asyncio client ----------------------------------------------------------------------


def _commands(client: redis.Redis, name: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))


def test_asyncio_client_shares_a_connection_and_waits_on_publishes(
    aio: ModuleType, redis_client: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    from engine.aio import close_loop_clients
    from engine.workflows import group

    async def scenario() -> None:
        # The task-sent events' flusher thread has a connection of its own, opened at its first
        # flush: opened now, so it is not counted below. (Left to open 50 ms into the sends, it
        # was sometimes listed mid-handshake, before its first PUBLISH, and counted: 2 > 1.)
        aio.app.sent_events.record("warm-up", aio.anap.name, (), {}, "warm-up", {})
        aio.app.sent_events.flush()
        before = {c["id"] for c in redis_client.client_list()}
        first = await aio.anap.adelay(0, 0)
        assert redis_client.llen("celery") == 1  # adelay() returned: the broker has the message
        sent = await asyncio.gather(*(aio.anap.aapply_async((0.5, i)) for i in range(100)))
        # 100 callers, one connection for their sends.
        opened = [c for c in redis_client.client_list() if c["id"] not in before]
        assert len(opened) <= 1, [(c["id"], c.get("cmd")) for c in opened]

        _worker(start_worker, "-P", "asyncio", "-c", "200")
        gets = _commands(redis_client, "get")
        values = await asyncio.gather(*(r.aget(timeout=60) for r in [first, *sent]))
        assert values == [0, *range(100)]
        assert _commands(redis_client, "get") - gets < 120  # one read each (+ the worker's), then the publish

        members = await group(aio.anap.s(0.1, i) for i in range(10)).adelay()
        assert await members.aget(timeout=60) == list(range(10))
        with pytest.raises(ValueError, match="from aget"):
            await (await aio.aboom.adelay("from aget")).aget(timeout=60)
        with pytest.raises(ResultTimeout):
            await (await aio.anap.adelay(30)).aget(timeout=0.3)
        await close_loop_clients()

    asyncio.run(scenario())


# -- the gevent pool ---------------------------------------------------------------------------


def test_gevent_pool_runs_2000_http_waits_at_c1000(
    aio: ModuleType, slow_http: SlowHTTP, redis_client: redis.Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    """The issue's check with -P gevent: plain def tasks doing blocking HTTP (urllib, patched)."""
    _worker(start_worker, "-P", "gevent", "-c", "1000", env={"AIO_HTTP": slow_http.url})
    started = time.monotonic()
    sent = aio.app.send_many(aio.fetch.name, [((i,), None) for i in range(2000)])
    metas = _results(redis_client, [r.id for r in sent], 120)
    elapsed = time.monotonic() - started
    print(f"\n-P gevent -c 1000: 2000 x 0.5 s HTTP waits in {elapsed:.2f}s ({2000 / elapsed:.0f} tasks/s)")
    assert sorted(m["result"] for m in metas) == list(range(2000))  # type: ignore[type-var]


def test_gevent_pool_limits_revoke_and_async_tasks(
    aio: ModuleType, ledger: Path, start_worker: Callable[..., WorkerProcess]
) -> None:
    _worker(start_worker, "-P", "gevent", "-c", "20")
    running = aio.longrun.delay(60)
    wait_for(lambda: f"start {running.id}" in ledger.read_text(), 30, "the long task to start")
    assert aio.soft.delay(10).get(timeout=30) == "caught soft"
    with pytest.raises(TimeLimitExceeded):
        aio.hard.delay(10).get(timeout=30)
    assert aio.anap.delay(0.1, 3).get(timeout=30) == 3  # async def works here too
    aio.app.control.revoke(running.id, terminate=True)
    with pytest.raises(TaskRevokedError):
        running.get(timeout=30)
    assert aio.nap.delay(0, 1).get(timeout=30) == 1  # the pool lives on after a terminate
    assert f"end {running.id}" not in ledger.read_text()


@pytest.mark.parametrize(("pool", "task"), [("gevent", "late"), ("asyncio", "alate"), ("asyncio", "late")])
def test_io_pools_warm_and_cold_shutdown(
    pool: str,
    task: str,
    aio: ModuleType,
    ledger: Path,
    redis_client: redis.Redis,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """SIGTERM lets running tasks finish; SIGQUIT hands every running acks_late task back at once
    (an async def task's coroutine is cancelled; a def task's thread is left to the exit)."""
    name = getattr(aio, task).name
    warm = _worker(start_worker, "-P", pool, "-c", "50", name="warm")
    first = aio.app.send_many(name, [((1.0, i), None) for i in range(20)])
    wait_for(lambda: ledger.read_text().count("start ") >= 20, 30, "twenty tasks running")
    warm.signal(signal.SIGTERM)  # warm: running tasks finish, then the worker exits
    assert warm.wait(30) == 0
    assert len(_results(redis_client, [r.id for r in first], 5)) == 20

    cold = _worker(start_worker, "-P", pool, "-c", "50", name="cold")
    second = aio.app.send_many(name, [((30.0, 100 + i), None) for i in range(20)])
    wait_for(lambda: ledger.read_text().count("start ") >= 40, 30, "twenty more running")
    cold.signal(signal.SIGQUIT)  # cold: stop now, hand every unfinished task back
    assert cold.wait(20) == 0  # well before the tasks' 30 s
    assert redis_client.llen("celery") == 20  # all back in the queue, none lost
    assert not [m for m in redis_client.mget([f"celery-task-meta-{r.id}" for r in second]) if m]


# -- tqctl bench --io --------------------------------------------------------------------------


def test_bench_io_reports_every_figure(broker_url: str) -> None:
    argv = [sys.executable, "-m", "tqctl", "bench", "--io", "--io-tasks", "100", "--io-concurrency", "100"]
    argv += ["--io-enqueue", "200", "--json", "--broker", broker_url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert set(figures) == {
        "io_tasks_per_s",
        "mem_mb_per_1000_in_flight",
        "enqueue_async_per_s",
        "enqueue_raw_lpush_per_s",
    }
    assert figures["io_tasks_per_s"] > 0 and figures["enqueue_async_per_s"] > 0


def test_bench_io_refuses_a_pool_it_cannot_measure(broker_url: str) -> None:
    argv = [sys.executable, "-m", "tqctl", "bench", "--io", "-P", "threads", "--broker", broker_url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode != 0
    assert "--io measures -P asyncio or -P gevent" in done.stderr and "Traceback" not in done.stderr
