"""Item 6 of issue 13: garbage in a message's embed (``callbacks``, ``errbacks``, ``chain``, ``chord``).

Before, the body succeeded and then sending the callbacks raised in the pool child, which died: the worker
counted a lost process and redelivered an acks_late task up to the delivery limit (the body ran 5 times),
then dead-lettered it as ``worker_lost``. Now: the body runs at most once, and the message is dead-lettered
with the reason (refused at decode when the embed's shape is wrong, or after the run when a signature
inside it cannot be sent).
"""

from __future__ import annotations

import pytest

from engine.protocol import task as protocol
from tests.faults.harness import dead_ids, judge, runs, send, wait_settled
from tests.integration.harness import wait_for

COUNT_LATE = "tests.apps.faults.count_late"
EMPTY = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
GARBAGE = [
    {"callbacks": "x"},
    {"callbacks": [1]},
    {"callbacks": [{"no": "task"}]},
    {"callbacks": [{"task": 5}]},
    {"callbacks": [{"task": "tests.apps.faults.count", "args": "not a list"}]},
    {"callbacks": [{"task": "tests.apps.faults.count", "options": "x"}]},
    {"callbacks": [{"task": "celery.group", "subtask_type": "group", "kwargs": {"tasks": "nope"}}]},
    {"callbacks": [{"task": "celery.group", "subtask_type": "group", "kwargs": {"tasks": [{"task": 1}]}}]},
    {"errbacks": [{"task": "tests.apps.faults.count", "options": {"link": ["x"]}}]},
    # Well formed, but sending it fails after the body ran: contained, then dead-lettered.
    {"callbacks": [{"task": "tests.apps.faults.count", "options": {"countdown": "soon"}}]},
    {"errbacks": {"a": 1}},
    {"chain": "x"},
    {"chain": [5]},
    {"chain": [{"task": "tests.apps.faults.count", "kwargs": []}]},
    {"chord": "x"},
    {"chord": [1]},
]


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_garbage_embed_runs_the_body_at_most_once_then_dead_letters(
    faults, start_worker, broker, broker_url: str, counter_url: str, pool: str
) -> None:
    worker = start_worker("-c", "2", "-P", pool, name="w1")
    client = broker.client()
    bad: list[str] = []
    for garbage in GARBAGE:
        task_id, raw = protocol.build(COUNT_LATE, [], {}, embed={**EMPTY, **garbage})
        client.lpush("celery", raw)
        bad.append(task_id)
    good = send(faults.count_late, 5)  # the worker still serves, with every pool slot
    took = wait_settled([*bad, *good], broker_url, counter_url, timeout=40)
    result = judge(f"garbage-embed-{pool}", [*bad, *good], broker_url, counter_url, recovery_s=took)
    assert worker.proc.poll() is None, worker.log()
    assert (result.lost, result.stuck, result.duplicated) == (0, 0, 0)
    counted = runs(counter_url)
    assert all(counted.get(i, 0) <= 1 for i in bad)
    assert all(counted.get(i) == 1 for i in good)
    wait_for(lambda: set(bad) <= set(dead_ids(broker_url)), 20, "every garbage message dead-lettered")
    reasons = dead_ids(broker_url)
    assert set(bad) <= set(reasons) and not set(good) & set(reasons)
    assert "worker_lost" not in {reasons[i] for i in bad}, reasons
    letters = {letter.task_id: letter for letter in faults.app.broker.dead_letters(100)}
    for garbage, task_id in zip(GARBAGE, bad, strict=True):
        letter = letters[task_id]
        if letter.reason == "bad_body":  # refused before it ran: the letter names the part
            assert next(iter(garbage)) in letter.detail and counted.get(task_id) is None, letter.detail
        else:  # ran once, then sending what follows failed
            assert letter.reason == "internal_error" and counted.get(task_id) == 1, letter.detail
    assert {letters[i].reason for i in bad} == {"bad_body", "internal_error"}


def test_callbacks_that_cannot_be_sent_end_failure_with_the_error(
    faults, start_worker, broker_url: str, counter_url: str
) -> None:
    """The contained case as a client sees it: the body ran once, then ``get()`` raises the error."""
    start_worker("-c", "1", name="w1")
    bad_link = faults.count.s().set(countdown="soon")
    result = faults.count_late.apply_async(link=bad_link)
    wait_for(lambda: result.id in dead_ids(broker_url), 30, "the dead letter")
    with pytest.raises(ValueError, match="internal error"):
        faults.app.AsyncResult(result.id).get(timeout=10)
    assert runs(counter_url).get(result.id) == 1
