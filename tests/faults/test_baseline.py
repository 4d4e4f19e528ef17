"""The control experiment: no fault at all. If this is not all-zero, the harness is wrong, not the engine."""

from __future__ import annotations

from tests.faults.harness import judge, send, wait_settled


def test_no_fault_every_task_runs_once(faults, start_worker, broker_url: str, counter_url: str) -> None:
    start_worker("-c", "2", name="w1")
    start_worker("-c", "2", "-P", "threads", name="w2")
    ids = send(faults.count, 200) + send(faults.count_late, 200)
    took = wait_settled(ids, broker_url, counter_url, timeout=60)
    result = judge("baseline", ids, broker_url, counter_url, recovery_s=took)
    assert (result.lost, result.stuck, result.duplicated, result.dead) == (0, 0, 0, 0)
    assert result.ran == len(ids)
