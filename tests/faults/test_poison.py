"""Item 1 of issue 13: a message whose headers have the wrong types must be dead-lettered with a reason,
and the worker must go on serving; before, one such message killed the consumer thread while the process
kept heartbeating, so nothing ever ran on that worker again and nobody reaped what it held.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.protocol import task as protocol
from tests.faults.harness import dead_ids, judge, send, wait_settled
from tests.integration.harness import ROOT

COUNT = "tests.apps.faults.count"

# (case id, where: "headers" | "properties", key, the wrong value)
POISON = [
    ("retries-text", "headers", "retries", "abc"),
    ("retries-negative", "headers", "retries", -1),
    ("timelimit-number", "headers", "timelimit", 5),
    ("timelimit-texts", "headers", "timelimit", ["abc", "def"]),
    ("timelimit-negative", "headers", "timelimit", [-1, -5]),
    ("timelimit-three", "headers", "timelimit", [1, 2, 3]),
    ("root-id-number", "headers", "root_id", 5),
    ("parent-id-list", "headers", "parent_id", ["x"]),
    ("group-object", "headers", "group", {"a": 1}),
    ("group-index-text", "headers", "group_index", "first"),
    ("argsrepr-number", "headers", "argsrepr", 7),
    ("origin-list", "headers", "origin", [1]),
    ("ignore-result-text", "headers", "ignore_result", "yes"),
    ("stamps-list", "headers", "stamps", [1, 2]),
    ("delivery-info-text", "properties", "delivery_info", "x"),
    ("routing-key-number", "properties", "delivery_info", {"exchange": "", "routing_key": 5}),
    ("priority-text", "properties", "priority", "high"),
]


def poison(where: str, key: str, value: object) -> tuple[str, bytes]:
    task_id, raw = protocol.build(COUNT, [], {})
    envelope = json.loads(raw)
    envelope[where][key] = value
    return task_id, json.dumps(envelope).encode()


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_poison_headers_are_dead_lettered_and_the_worker_keeps_serving(
    faults, start_worker, broker, broker_url: str, counter_url: str, pool: str
) -> None:
    worker = start_worker("-c", "2", "-P", pool, name="w1")
    client = broker.client()
    bad: dict[str, str] = {}
    good: list[str] = []
    for case, where, key, value in POISON:  # each poison message with a normal task right behind it
        task_id, raw = poison(where, key, value)
        client.lpush("celery", raw)
        bad[task_id] = case
        good += send(faults.count, 1)
    took = wait_settled([*bad, *good], broker_url, counter_url, timeout=30)
    result = judge(f"poison-headers-{pool}", [*bad, *good], broker_url, counter_url, recovery_s=took)
    assert worker.proc.poll() is None, worker.log()
    assert (result.lost, result.stuck, result.duplicated) == (0, 0, 0)
    assert result.dead == len(POISON) and result.ran == len(good)

    # The operator's view: each one in `tqctl dead ls` with a reason naming the header.
    done = subprocess.run(
        [sys.executable, "-m", "tqctl", "dead", "ls", "--json", "--broker", broker_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    letters = {row["task_id"]: row for row in json.loads(done.stdout)}
    for task_id, case in bad.items():
        row = letters[task_id]
        assert row["reason"] == "bad_header", (case, row)
        key = next(k for c, _w, k, _v in POISON if c == case)
        assert key in row["detail"], (case, row["detail"])


def test_an_unexpected_error_in_dispatch_dead_letters_that_message_only(
    faults, start_worker, broker_url: str, counter_url: str
) -> None:
    """Not the message's fault and not the broker's: a bug inside the worker's sorting (here a rate limit
    that does not parse). Before, it killed the consumer thread; now that message is dead-lettered with
    the error and the worker goes on serving."""
    import tests.apps.faults_broken as broken

    worker = start_worker("-c", "2", name="w1", app="tests.apps.faults_broken")
    bad = [broken.bad_rate.delay().id for _ in range(3)]
    good = send(faults.count, 5)
    took = wait_settled([*bad, *good], broker_url, counter_url, timeout=30)
    result = judge("dispatch-error", [*bad, *good], broker_url, counter_url, recovery_s=took)
    assert worker.proc.poll() is None, worker.log()
    assert (result.lost, result.stuck, result.duplicated) == (0, 0, 0)
    assert result.dead == len(bad) and result.ran == len(good)
    assert set(dead_ids(broker_url).values()) == {"internal_error"}
