"""The long tier (not collected by default: ``-m 'not long'`` in pyproject's addopts). Run it with

    .venv/bin/python -m pytest -m long -s tests/faults/test_long.py

``FAULT_SOAK_SECONDS`` (default 600) and ``FAULT_SOAK_RATE`` (tasks/s, default 200) size the soak.
Each experiment prints its verdict line; the soak also prints broker memory, key count and worker
RSS samples, so a slow leak shows as a trend.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from engine.bundled import PrivateServer, client_for, start_private
from tests.apps import faults
from tests.faults.kit import alive, counter_url, judge, resume, send, wait_for, wait_ran, workers  # noqa: F401

pytestmark = [pytest.mark.long, pytest.mark.timeout(3600)]
RESTARTS = 10
EXPIRES = 60


@pytest.fixture(autouse=True)
def only_when_asked(request: pytest.FixtureRequest) -> None:
    """``-m integration`` (the faults conftest marks these too) overrides addopts' ``-m 'not long'``:
    run only when the long tier is named."""
    if "long" not in (request.config.option.markexpr or "") or "not long" in request.config.option.markexpr:
        pytest.skip("the long tier: run with -m long")


@pytest.fixture
def unix_broker(tmp_path: Path) -> Iterator[PrivateServer]:
    """A private server on a unix socket: restarted in the same folder, it keeps its URL and AOF."""
    server = start_private(tmp_path / "broker")
    yield server
    server.stop()


@pytest.fixture
def client(unix_broker: PrivateServer, counter_url: str) -> Iterator[ModuleType]:  # noqa: F811
    faults.app.close()
    faults.app.conf.broker_url = unix_broker.url
    faults.app.conf.result_backend = unix_broker.url
    yield faults
    faults.app.close()


def test_ten_broker_restarts_under_load(client, unix_broker, counter_url, workers) -> None:  # noqa: F811
    backend = ["--backend", counter_url]  # results away from the broker being killed
    workers(unix_broker.url, "-P", "prefork", "-c", "2", *backend, name="p")
    workers(unix_broker.url, "-P", "threads", "-c", "2", *backend, name="t")
    late, early = send(client, 2000, late=True, seconds=0.01), send(client, 2000, seconds=0.01)
    server = unix_broker
    started = time.monotonic()
    for _ in range(RESTARTS):
        time.sleep(2.0)  # the load between two crashes
        os.kill(server.pid, signal.SIGKILL)
        wait_for(lambda pid=server.pid: not alive(pid), 10, "the broker to die")
        server = start_private(server.directory)  # same folder: same socket, replays its AOF
    runs = wait_ran(counter_url, late + early, 300)
    result = judge("long.broker_restarts_x10", late + early, runs, server.url, time.monotonic() - started)
    assert (result.lost, result.stuck) == (0, 0)
    assert [i for i in early if runs.get(i, 0) > 1] == []  # early ack: at most once, even here


def test_soak_with_results_and_expiry(client, unix_broker, counter_url, workers) -> None:  # noqa: F811
    seconds = float(os.environ.get("FAULT_SOAK_SECONDS", "600"))
    rate = float(os.environ.get("FAULT_SOAK_RATE", "200"))
    env = {"FAULT_RESULT_EXPIRES": str(EXPIRES)}
    pool = [workers(unix_broker.url, "-P", "prefork", "-c", "2", name="p", env=env),
            workers(unix_broker.url, "-P", "threads", "-c", "2", name="t", env=env)]
    broker = client_for(unix_broker.url)
    ids: list[str] = []
    samples: list[dict[str, float]] = []
    started = time.monotonic()
    next_sample = started
    while (elapsed := time.monotonic() - started) < seconds:
        ids += send(client, max(1, int(rate / 20)), late=len(ids) % 2 == 0)
        if time.monotonic() >= next_sample:
            next_sample += 30
            samples.append(sample(broker, pool, elapsed))
            print("soak sample", samples[-1], flush=True)
        time.sleep(max(0.0, started + len(ids) / rate - time.monotonic()))
    runs = wait_ran(counter_url, ids, 300)
    samples.append(sample(broker, pool, time.monotonic() - started))
    print("soak sample", samples[-1], flush=True)
    result = judge("long.soak", ids, runs, unix_broker.url, None)
    assert (result.lost, result.stuck, result.duplicated) == (0, 0, 0)
    # Result keys expire: the first results are gone, the last are there, and no more are kept
    # than about ``EXPIRES`` seconds' worth.
    assert broker.exists(f"celery-task-meta-{ids[0]}") == 0
    wait_for(lambda: broker.exists(f"celery-task-meta-{ids[-1]}"), 30, "the last result")
    kept = sum(1 for _ in broker.scan_iter(match="celery-task-meta-*", count=1000))
    assert kept <= rate * (EXPIRES + 60), kept
    # Flat: broker memory and worker RSS at the end within 1.5x of the level after warm-up.
    warm = [s for s in samples if s["t"] >= EXPIRES + 30] or samples
    assert samples[-1]["broker_mb"] <= 1.5 * max(warm[0]["broker_mb"], 5.0)
    assert samples[-1]["workers_mb"] <= 1.5 * warm[0]["workers_mb"]
    broker.close()


def sample(broker, pool, t: float) -> dict[str, float]:  # noqa: ANN001
    info = broker.info("memory")
    rss = 0
    for proc in pool:
        for pid in [proc.pid, *proc.children()]:
            try:
                pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
            rss += pages * os.sysconf("SC_PAGE_SIZE")
    return {"t": round(t, 1), "broker_mb": round(info["used_memory"] / 2**20, 2), "keys": broker.dbsize(),
            "workers_mb": round(rss / 2**20, 1)}


__all__ = ["resume"]
