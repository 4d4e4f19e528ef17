"""``inspect scheduled`` on RabbitMQ lists the ETA tasks our worker holds unacked until due.

On AMQP a task due within ``HOLD`` seconds is held in the worker's memory (a later one waits in
RabbitMQ's delay levels, which no worker lists), so, as Celery's worker does, ours names it in its
``scheduled`` reply to our ``app.control.inspect()``, to Celery's and to ``tqctl inspect``.

A Celery client on classic queues publishes a countdown task straight to its queue, so our worker
receives it at once and holds it for nearly the whole countdown. A worker that fetches it late on
a loaded machine may find it due already and run it without holding it: the send is then tried
again (a positive condition ends each try: listed, or run), never judged by a sleep.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from engine.broker.amqp import HOLD
from tests.integration import test_amqp_interop as interop
from tests.integration.harness import ROOT

pytestmark = pytest.mark.integration
celery_mq_client = interop.celery_mq_client
interop_mq = interop.interop_mq
our_mq_worker = interop.our_mq_worker
NAME = f"ours1@{interop.HOST}"
COUNTDOWN = HOLD - 0.1  # held, never sent back to RabbitMQ's delay levels (those wait longer than HOLD)
TRIES = 5
Ask = Callable[[], list[dict[str, Any]]]


def listed_while_held(client: Any, ask: Ask) -> tuple[Any, dict[str, Any], float, float]:
    """Send a countdown task and ask until the worker lists it: (result, item, sent after, sent before)."""
    for attempt in range(TRIES):
        before = time.time()
        result = client.send_task("interop.add", args=[attempt, 40], countdown=COUNTDOWN)
        after = time.time()
        while not result.ready():
            items = [item for item in ask() if item["request"]["id"] == result.id]
            if items:
                return result, items[0], before, after
        assert result.get(timeout=30) == attempt + 40  # due before it was listed (a late fetch): again
    raise AssertionError(f"no try of {TRIES} saw the task held: the worker never listed it")


def check_item(item: dict[str, Any], result: Any, before: float, after: float) -> None:
    """Celery's shape: the message's ETA, the timer's priority, the request info."""
    eta = dt.datetime.fromisoformat(item["eta"])
    assert eta.tzinfo is not None and before + COUNTDOWN - 0.01 <= eta.timestamp() <= after + COUNTDOWN + 0.01
    assert item["priority"] == 6
    request = item["request"]
    assert (request["id"], request["name"], request["hostname"]) == (result.id, "interop.add", NAME)
    assert request["args"][1] == 40 and request["acknowledged"] is False and request["time_start"] is None


def test_our_inspect_and_celerys_list_a_held_countdown_task_until_it_runs(
    celery_mq_client: Any, our_mq_worker: Any, interop_mq: Any
) -> None:
    our_mq_worker()
    ours = interop_mq.app.control.inspect(destination=[NAME], timeout=5)
    celerys = celery_mq_client.control.inspect(destination=[NAME], timeout=5)

    def ask_ours() -> list[dict[str, Any]]:
        return (ours.scheduled() or {})[NAME]  # type: ignore[no-any-return]

    def ask_celerys() -> list[dict[str, Any]]:
        return (celerys.scheduled() or {})[NAME]  # type: ignore[no-any-return]

    for ask in (ask_ours, ask_celerys):
        result, item, before, after = listed_while_held(celery_mq_client, ask)
        check_item(item, result, before, after)
        assert result.get(timeout=30) == item["request"]["args"][0] + 40
        assert ask() == []  # it ran: no longer held, so no longer listed


def test_tqctl_inspect_scheduled_shows_the_workers_held_task(
    celery_mq_client: Any, our_mq_worker: Any, interop_mq: Any, amqp_url: str, redis_url: str
) -> None:
    our_mq_worker()
    env = {**os.environ, "TQCTL_BROKER": amqp_url, "TQCTL_BACKEND": redis_url, "PYTHONPATH": str(ROOT)}

    def ask_cli() -> list[dict[str, Any]]:
        argv = [sys.executable, "-m", "tqctl", "inspect", "scheduled", "--json", "-d", NAME, "--timeout", "5"]
        run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        doc = json.loads(run.stdout)
        assert run.returncode == 0 and "broker" not in doc  # RabbitMQ's delay levels cannot be listed
        return doc["nodes"][0]["reply"]  # type: ignore[no-any-return]

    result, item, before, after = listed_while_held(celery_mq_client, ask_cli)
    check_item(item, result, before, after)
    assert result.get(timeout=30) == item["request"]["args"][0] + 40
    assert ask_cli() == []
