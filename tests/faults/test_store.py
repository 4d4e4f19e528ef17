"""Item 2 of issue 13: the result store (on its own server, apart from the broker) fails while results
are being stored. Before, the threads pool's thread died (pool size 0, jobs outstanding) and a prefork
child exited, whose loss the parent then failed to record (``BrokerUnavailable`` killed its collector):
nothing settled again while the worker kept heartbeating.

Now the store is retried with backoff; a store back within ``tqctl_result_retry_timeout`` loses nothing,
and one that stays away sends each such message to the dead-letter store (``result_not_stored``): it ran
once, and an operator sees it; never acked as if its result had been recorded, never wedged.
"""

from __future__ import annotations

import time

import pytest

from engine.protocol.results import task_key
from tests.faults.harness import dead_ids, judge, runs, send, wait_settled
from tests.integration.harness import wait_for


def _results(backend, ids: list[str]) -> list[bytes | None]:
    with backend.client() as client:
        return client.mget([task_key(i) for i in ids])


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_result_store_down_mid_run_then_back(
    faults, start_worker, make_server, broker_url: str, counter_url: str, pool: str
) -> None:
    backend = make_server("backend")
    faults.app.conf.result_backend = backend.url
    start_worker("-c", "2", "-P", pool, "--backend", backend.url, name="w1")
    start_worker("-c", "2", "-P", pool, "--backend", backend.url, name="w2")
    ids = send(faults.count, 60, 0.1)
    wait_for(lambda: sum(runs(counter_url).values()) >= 8, 30, "the first runs")
    backend.stop()
    stopped = time.monotonic()
    time.sleep(10.0)  # the outage outlasts redis-py's own retries, well inside our 30 s; the runs it catches wait
    backend.start()
    took = wait_settled(ids, broker_url, counter_url, timeout=60)
    result = judge(f"result-store-down-{pool}", ids, broker_url, counter_url, recovery_s=time.monotonic() - stopped)
    assert (result.lost, result.stuck, result.duplicated, result.dead) == (0, 0, 0, 0), took
    wait_for(lambda: all(_results(backend, ids)), 60, "every result stored once the store is back")
    assert all(b'"SUCCESS"' in r for r in _results(backend, ids))
    # Both workers still serve with every slot: 8 slow tasks at once all start.
    more = send(faults.count, 8, 2.0)
    wait_for(lambda: all(runs(counter_url).get(i) for i in more), 30, "a full pool on both workers")


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_result_store_that_stays_down_dead_letters_what_ran(
    faults, start_worker, make_server, broker_url: str, counter_url: str, pool: str
) -> None:
    backend = make_server("backend")
    faults.app.conf.result_backend = backend.url
    worker = start_worker(
        "-c", "2", "-P", pool, "--backend", backend.url, name="w1", app="tests.apps.faults_broken"
    )  # gives up on the store after 2 s
    backend.stop()
    ids = send(faults.count, 4) + send(faults.count_late, 4)
    wait_for(lambda: set(ids) <= set(dead_ids(broker_url)), 60, "every message dead-lettered")
    backend.start()
    after = send(faults.count, 4)
    took = wait_settled([*ids, *after], broker_url, counter_url, timeout=30)
    wait_for(lambda: all(_results(backend, after)), 30, "results once the store is back")
    result = judge(f"result-store-stays-down-{pool}", [*ids, *after], broker_url, counter_url, recovery_s=took)
    assert (result.lost, result.stuck, result.duplicated) == (0, 0, 0)
    assert result.dead == len(ids) and result.ran == len(ids) + len(after)
    assert set(dead_ids(broker_url).values()) == {"result_not_stored"}
    assert worker.proc.poll() is None
    letters = {letter.task_id: letter for letter in faults.app.broker.dead_letters(100)}
    assert all("could not be recorded" in letters[i].detail for i in ids)


def test_a_child_lost_while_the_store_is_down_leaves_the_collector_alive(
    faults, start_worker, make_server, broker_url: str, counter_url: str
) -> None:
    """The parent records a lost child's task as FAILURE in the result store; with the store down that
    raised in the collector thread, which died: no outcome was settled again. Now the record waits until
    the store is back, and the pool goes on."""
    import os
    import signal

    backend = make_server("backend")
    faults.app.conf.result_backend = backend.url
    worker = start_worker("-c", "2", "--backend", backend.url, name="w1")
    (slow,) = send(faults.count, 1, 60.0)
    wait_for(lambda: runs(counter_url).get(slow), 30, "the slow task to start")
    backend.stop()
    for pid in worker.children():
        os.kill(pid, signal.SIGKILL)  # as the OOM killer would
    time.sleep(10.0)  # the outage outlasts redis-py's own retries
    backend.start()
    after = send(faults.count, 6)
    took = wait_settled([slow, *after], broker_url, counter_url, timeout=60)
    result = judge("child-lost-store-down", [slow, *after], broker_url, counter_url, recovery_s=took)
    assert (result.lost, result.stuck, result.duplicated) == (0, 0, 0)
    assert result.ran == 7
    wait_for(lambda: all(_results(backend, [slow, *after])), 30, "the lost task's FAILURE, stored late")
    assert b"WorkerLostError" in _results(backend, [slow])[0]
