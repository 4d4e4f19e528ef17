"""Item 10 of issue 13 (part): an owner heartbeat that cannot be written is a warning in the worker's
log (it used to be debug, so at the usual ``-l info`` an operator saw nothing while the worker's messages
were about to be reclaimed by others), and its recovery is logged too."""

from __future__ import annotations

from tests.faults.harness import judge, send, wait_settled
from tests.integration.harness import wait_for


def _warned_twice(log: str) -> bool:
    lines = [x for x in log.splitlines() if "owner heartbeat and upkeep failing" in x]
    return all(sum(f"({what};" in x for x in lines) >= 2 for what in ("heartbeat", "upkeep"))


def test_failed_owner_heartbeats_are_warned_and_recovery_logged(
    faults, start_worker, broker, broker_url: str, counter_url: str
) -> None:
    worker = start_worker("-c", "2", name="w1")
    broker.stop()
    wait_for(lambda: "owner heartbeat and upkeep failing" in worker.log(), 30, "the warning in the log")
    # The outage goes on until each loop has warned a second time (they warn every 5 s, with the
    # time so far): until then nothing may say the broker is back. Before, an upkeep tick with
    # nothing to send logged "written again" about once a second of the outage.
    wait_for(lambda: _warned_twice(worker.log()), 60, "a second warning from each loop")
    during = worker.log()
    assert "written again" not in during and "reaches the broker again" not in during, during
    broker.start()
    wait_for(lambda: "owner heartbeat written again" in worker.log(), 30, "the recovery in the log")
    wait_for(lambda: "upkeep (acks, events, reaping) reaches the broker again" in worker.log(), 30, "upkeep's")
    line = next(x for x in worker.log().splitlines() if "owner heartbeat and upkeep failing" in x)
    assert "WARNING" in line, line
    ids = send(faults.count, 10)
    took = wait_settled(ids, broker_url, counter_url, timeout=60)
    result = judge("heartbeat-warning", ids, broker_url, counter_url, recovery_s=took)
    assert (result.lost, result.stuck, result.duplicated, result.ran) == (0, 0, 0, len(ids))
