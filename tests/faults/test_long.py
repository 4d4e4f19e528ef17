"""The long tier (not collected by default: ``-m 'not long'`` in pyproject's addopts). Run it with

    .venv/bin/python -m pytest -m long -s tests/faults/test_long.py

``FAULT_SOAK_SECONDS`` (default 600) and ``FAULT_SOAK_RATE`` (tasks/s, default 200) size the soak.
Each experiment prints its verdict line; the soak also prints broker memory, key count and worker
RSS samples, so a slow leak shows as a trend.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.faults.harness import judge, runs, send, wait_settled
from tests.integration.harness import wait_for

pytestmark = [pytest.mark.long, pytest.mark.timeout(3600)]
RESTARTS = 10
EXPIRES = 60


@pytest.fixture(autouse=True)
def only_when_asked(request: pytest.FixtureRequest) -> None:
    """``-m integration`` (the faults conftest marks these too) overrides addopts' ``-m 'not long'``:
    run only when the long tier is named."""
    if "long" not in (request.config.option.markexpr or "") or "not long" in request.config.option.markexpr:
        pytest.skip("the long tier: run with -m long")


def test_ten_broker_restarts_under_load(faults, broker, broker_url, counter_url, start_worker) -> None:
    backend = ["--backend", counter_url]  # results away from the broker being killed
    start_worker("-P", "prefork", "-c", "2", *backend, name="p")
    start_worker("-P", "threads", "-c", "2", *backend, name="t")
    late, early = send(faults.count_late, 2000, 0.01), send(faults.count, 2000, 0.01)
    started = time.monotonic()
    for _ in range(RESTARTS):
        time.sleep(2.0)  # the load between two crashes
        broker.kill()  # SIGKILL, then waits for it to die
        broker.start()  # same folder: same address, replays its AOF
    wait_settled(late + early, broker_url, counter_url, 300)
    result = judge("long.broker_restarts_x10", late + early, broker_url, counter_url, time.monotonic() - started)
    counted = runs(counter_url)
    assert (result.lost, result.dead, result.stuck) == (0, 0, 0)
    assert [i for i in early if counted.get(i, 0) > 1] == []  # early ack: at most once, even here


def test_soak_with_results_and_expiry(faults, broker, broker_url, counter_url, start_worker) -> None:
    seconds = float(os.environ.get("FAULT_SOAK_SECONDS", "600"))
    rate = float(os.environ.get("FAULT_SOAK_RATE", "200"))
    env = {"FAULT_RESULT_EXPIRES": str(EXPIRES)}
    pool = [
        start_worker("-P", "prefork", "-c", "2", name="p", env=env),
        start_worker("-P", "threads", "-c", "2", name="t", env=env),
    ]
    store = broker.client()
    ids: list[str] = []
    samples: list[dict[str, float]] = []
    started = time.monotonic()
    next_sample = started
    while (elapsed := time.monotonic() - started) < seconds:
        ids += send(faults.count_late if len(ids) % 2 == 0 else faults.count, max(1, int(rate / 20)))
        if time.monotonic() >= next_sample:
            next_sample += 30
            samples.append(sample(store, pool, elapsed))
            print("soak sample", samples[-1], flush=True)
        time.sleep(max(0.0, started + len(ids) / rate - time.monotonic()))
    wait_settled(ids, broker_url, counter_url, 300)
    samples.append(sample(store, pool, time.monotonic() - started))
    print("soak sample", samples[-1], flush=True)
    result = judge("long.soak", ids, broker_url, counter_url, None)
    assert (result.lost, result.dead, result.stuck, result.duplicated) == (0, 0, 0, 0)
    # Result keys expire: the first results are gone, the last are there, and no more are kept
    # than about ``EXPIRES`` seconds' worth.
    assert store.exists(f"celery-task-meta-{ids[0]}") == 0
    wait_for(lambda: store.exists(f"celery-task-meta-{ids[-1]}"), 30, "the last result")
    kept = sum(1 for _ in store.scan_iter(match="celery-task-meta-*", count=1000))
    assert kept <= rate * (EXPIRES + 60), kept
    # Flat: broker memory and worker RSS at the end within 1.5x of the level after warm-up.
    warm = [s for s in samples if s["t"] >= EXPIRES + 30] or samples
    assert samples[-1]["broker_mb"] <= 1.5 * max(warm[0]["broker_mb"], 5.0)
    assert samples[-1]["workers_mb"] <= 1.5 * warm[0]["workers_mb"]
    store.close()


def sample(store, pool, t: float) -> dict[str, float]:  # noqa: ANN001
    info = store.info("memory")
    rss = 0
    for proc in pool:
        for pid in [proc.pid, *proc.children()]:
            try:
                pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
            rss += pages * os.sysconf("SC_PAGE_SIZE")
    return {
        "t": round(t, 1),
        "broker_mb": round(info["used_memory"] / 2**20, 2),
        "keys": store.dbsize(),
        "workers_mb": round(rss / 2**20, 1),
    }
