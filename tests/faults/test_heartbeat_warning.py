"""Item 10 of issue 13 (part): an owner heartbeat that cannot be written is a warning in the worker's
log (it used to be debug, so at the usual ``-l info`` an operator saw nothing while the worker's messages
were about to be reclaimed by others), and its recovery is logged too."""

from __future__ import annotations

import time

from tests.faults.harness import judge, send, wait_settled
from tests.integration.harness import wait_for


def test_failed_owner_heartbeats_are_warned_and_recovery_logged(
    faults, start_worker, broker, broker_url: str, counter_url: str
) -> None:
    worker = start_worker("-c", "2", name="w1")
    broker.stop()
    wait_for(lambda: "owner heartbeat and upkeep failing" in worker.log(), 30, "the warning in the log")
    time.sleep(1.0)  # the outage lasts a little: the worker keeps trying
    broker.start()
    wait_for(lambda: "owner heartbeat written again" in worker.log(), 30, "the recovery in the log")
    line = next(x for x in worker.log().splitlines() if "owner heartbeat and upkeep failing" in x)
    assert "WARNING" in line, line
    ids = send(faults.count, 10)
    took = wait_settled(ids, broker_url, counter_url, timeout=60)
    result = judge("heartbeat-warning", ids, broker_url, counter_url, recovery_s=took)
    assert (result.lost, result.stuck, result.duplicated, result.ran) == (0, 0, 0, len(ids))
