"""A task that finishes while the broker is away keeps its history record (``tqctl task ID``, the
console's task screens): the records and task events the worker could not write wait for the
broker instead of being dropped at the first failed flush."""

from __future__ import annotations

import pytest

from engine.history import History
from tests.faults.harness import runs, send
from tests.integration.harness import wait_for


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_a_task_finished_during_a_broker_outage_has_its_record_once_it_is_back(
    faults, start_worker, broker, broker_url: str, counter_url: str, pool: str
) -> None:
    worker = start_worker("-P", pool, "-c", "2", name="w1")
    [task_id] = send(faults.count, 1, 2.0, ignore_result=True)
    wait_for(lambda: runs(counter_url).get(task_id) == 1, 30, "the task to start")
    broker.stop()
    wait_for(lambda: f"[{task_id}] succeeded" in worker.log(), 30, "the task to finish in the outage")
    # Until the worker has warned that upkeep fails, its flushes have met the outage.
    wait_for(lambda: "owner heartbeat and upkeep failing" in worker.log(), 30, "the outage warning")
    broker.start()
    history = History(broker.client())
    wait_for(lambda: history.find(task_id), 30, "the task's record in the history")
    [record] = history.find(task_id)
    assert record["state"] == "SUCCESS"
    assert "dropped" not in worker.log()
