"""``tqctl task ID`` for a task no worker has recorded: one still queued shows where it waits; one
purged says what is known (no worker ran or holds it, not in the delayed set, not among the
messages waiting) instead of the same "no record ... it may still be queued" for both (Celery's
AsyncResult and Flower say PENDING for both, forever). A real Redis, worker and CLI processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.integration.harness import ROOT

pytestmark = pytest.mark.integration


def tq(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TQCTL_BROKER": url, "PYTHONPATH": str(ROOT)}
    env.pop("TQCTL_BACKEND", None)
    return subprocess.run([sys.executable, "-m", "tqctl", *args], cwd=ROOT, env=env, capture_output=True, text=True)


def test_a_queued_task_shows_its_place_and_a_purged_one_says_it_is_nowhere(
    broker_url: str, shop: Any, start_worker: Any
) -> None:
    start_worker("-c", "1")  # consumes "celery" only: "parked" waits
    first = shop.add.apply_async((1, 2), queue="parked").id
    second = shop.add.apply_async((3, 4), queue="parked").id

    shown = tq(broker_url, "task", second, "--json")
    assert shown.returncode == 0, shown.stderr  # it was exit 1: "no record of task ... (it may still be queued"
    doc = json.loads(shown.stdout)
    assert doc["queued"] == {"queue": "parked", "position": 2, "depth": 2}
    assert (doc["state"], doc["name"], doc["args"], doc["held_by"]) == (
        "PENDING",
        "tests.apps.shop.add",
        "(3, 4)",
        None,
    )
    human = tq(broker_url, "task", first)
    assert "queued: in parked, position 1 of 2" in human.stdout, human.stdout

    purged = tq(broker_url, "purge", "parked", "--yes")
    assert purged.returncode == 0, purged.stderr
    gone = tq(broker_url, "task", second)
    assert gone.returncode == 1 and gone.stdout == ""
    line = gone.stderr
    assert line.count("\n") == 1 and line.startswith(f"tqctl: error: no record of task {second}: "), line
    for part in ("not in the history", "delayed set", "held by no worker", "(all read)", "purged"):
        assert part in line, line


def test_a_task_a_worker_holds_says_which(broker_url: str, shop: Any, start_worker: Any) -> None:
    """Taken from its queue and not finished: in no queue and not recorded yet, but not lost."""
    start_worker("-c", "1")
    running = shop.slow_early.delay(20, "held").id
    blocked = shop.add.delay(5, 6).id  # prefetched behind it: reserved
    for task_id, held_as, state in ((running, "active", "STARTED"), (blocked, "reserved", "RECEIVED")):
        for _ in range(100):  # until the worker has taken it (no timing assumption on the take)
            proc = tq(broker_url, "task", task_id, "--json")
            if proc.returncode == 0 and json.loads(proc.stdout)["held_by"]:
                break
        doc = json.loads(proc.stdout)
        assert doc["held_by"]["as"] == held_as and doc["state"] == state, doc
        assert doc["queued"] is None
