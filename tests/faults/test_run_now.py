"""Item 10 of issue 13 (part): the console's "run now" of an ETA task. It read the delayed set, then
did a ZREM and, separately, an LPUSH: a worker promoting the task in between made it run twice (the
ZREM removed nothing, the LPUSH queued a second copy). Now the move is one broker script that queues
the task only if it was still in the delayed set.

The interleaving is made exact, not hoped for: the test promotes every due task (as a worker's
maintenance does, same script) right after the console has found the one it wants.
"""

from __future__ import annotations

import time

import pytest

from engine.broker.redis import DELAYED
from engine.bundled import client_for
from tests.faults.harness import judge, runs, send, wait_settled
from tests.integration.harness import wait_for
from tqctl.tui.adapter import ActionError, Adapter


def _parked(broker_url: str, n: int) -> bool:
    with client_for(broker_url, 10.0) as client:
        return client.zcard(DELAYED) == n


def test_run_now_races_a_promotion_and_runs_once(
    faults, start_worker, broker_url: str, counter_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_worker("-c", "2", name="w1")
    ids = send(faults.count, 20, countdown=2)
    wait_for(lambda: _parked(broker_url, len(ids)), 30, "the ETA tasks parked in the delayed set")
    adapter = Adapter(broker_url)
    store = adapter.view.store  # the connection the console's run-now scans and moves with
    scan = store.zscan_iter

    def scan_then_promote(*args, **kwargs):  # the console found it; then it became due and was promoted
        for member, eta in scan(*args, **kwargs):
            while time.time() <= eta:
                time.sleep(0.05)
            adapter.broker.promote_due(time.time())
            yield member, eta

    monkeypatch.setattr(store, "zscan_iter", scan_then_promote)
    refused = 0
    for task_id in ids:
        try:
            adapter.run_eta_now(task_id)
        except ActionError:
            refused += 1  # it became due first: already on its queue, nothing to move
    adapter.close()
    sentinel = send(faults.count, 1)
    took = wait_settled([*ids, *sentinel], broker_url, counter_url, timeout=30)
    wait_for(lambda: runs(counter_url).get(sentinel[0]), 30, "the sentinel task")
    result = judge("run-now-vs-promotion", [*ids, *sentinel], broker_url, counter_url, recovery_s=took)
    assert (result.lost, result.stuck, result.duplicated) == (0, 0, 0)
    assert refused == len(ids)


def test_run_now_moves_a_parked_task_once(faults, start_worker, broker_url: str, counter_url: str) -> None:
    start_worker("-c", "2", name="w1")
    ids = send(faults.count, 5, countdown=3600)
    wait_for(lambda: _parked(broker_url, len(ids)), 30, "the ETA tasks parked in the delayed set")
    adapter = Adapter(broker_url)
    try:
        moved = [adapter.run_eta_now(task_id) for task_id in ids]
        with pytest.raises(ActionError):
            adapter.run_eta_now(ids[0])  # already moved: not queued a second time
    finally:
        adapter.close()
    assert {m["queue"] for m in moved} == {"celery"}
    took = wait_settled(ids, broker_url, counter_url, timeout=30)
    result = judge("run-now", ids, broker_url, counter_url, recovery_s=took)
    assert (result.lost, result.stuck, result.duplicated, result.ran) == (0, 0, 0, len(ids))
