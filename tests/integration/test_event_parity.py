"""Events and stored results as Celery tools read them, beside a REAL Celery 5.7 worker.

* ``task-sent`` carries the time of ``delay()``, not the time our client's batch went out: a
  worker may start a task before that, and a timeline must never show a task started before sent.
* A retried task's stored traceback and its ``task-retried`` event name ``celery.exceptions.Retry``,
  word for word what a Celery worker stores and sends for the same task.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engine import App
from engine.protocol.results import task_key
from tests.integration.harness import WorkerProcess, wait_for
from tests.integration.test_inspect_parity import OURS
from tests.integration.test_ops_events import Tail

pytestmark = pytest.mark.integration


@pytest.fixture
def tail(broker_url: str) -> Iterator[Tail]:
    follower = Tail(broker_url)
    yield follower
    follower.close()


def test_task_sent_is_stamped_when_sent_never_after_started(
    broker_url: str, tail: Tail, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker("-P", "threads", "-c", "4", name="o1", app=OURS)
    client = App("client", broker=broker_url, backend=broker_url)
    try:
        results = [client.send_task("remote.add", (i, i)) for i in range(90)]
        assert [r.get(timeout=30) for r in results] == [2 * i for i in range(90)]
    finally:
        client.close()
    ids = {r.id for r in results}

    def stamps(kind: str) -> dict[str, float]:
        return {
            e["uuid"]: dt.datetime.fromisoformat(e["timestamp"]).timestamp()  # tail prints ISO 8601
            for e in tail.seen()
            if e["type"] == kind and e.get("uuid") in ids
        }

    wait_for(lambda: len(stamps("task-sent")) == len(stamps("task-started")) == 90, 20, "90 sent and started events")
    sent, started = stamps("task-sent"), stamps("task-started")
    late = sorted(sent[i] - started[i] for i in ids if sent[i] > started[i])
    assert late == [], f"{len(late)} of 90 tasks sent after they started (by up to {late[-1]:.3f}s)"


def test_a_retry_names_celery_exceptions_retry_as_a_celery_worker_does(
    broker_url: str,
    tail: Tail,
    celery_prefork: Any,
    start_worker: Callable[..., WorkerProcess],
    celery_app: Any,
    redis_client: Any,
) -> None:
    celery_prefork("c1", "-c", "1", "-E", "-Q", "theirs")
    start_worker("-P", "prefork", "-c", "1", name="o1", app=OURS)
    theirs = celery_app.send_task("remote.retry_later", ("nope",), queue="theirs").id
    ours = celery_app.send_task("remote.retry_later", ("nope",), queue="celery").id

    def retried(task_id: str) -> dict[str, Any] | None:
        return next((e for e in tail.seen() if e["type"] == "task-retried" and e["uuid"] == task_id), None)

    wait_for(lambda: retried(theirs) and retried(ours), 30, "both task-retried events")
    last = {
        who: retried(task_id)["traceback"].strip().splitlines()[-1]
        for who, task_id in (("celery", theirs), ("ours", ours))
    }
    assert last["celery"].startswith("celery.exceptions.Retry: Retry in 300")
    assert last["ours"] == last["celery"]

    stored = {
        who: json.loads(redis_client.get(task_key(task_id))) for who, task_id in (("celery", theirs), ("ours", ours))
    }
    assert stored["ours"]["status"] == stored["celery"]["status"] == "RETRY"
    assert stored["ours"]["result"] == stored["celery"]["result"]  # the exc given to retry(): ValueError('nope')
    assert stored["ours"]["traceback"].strip().splitlines()[-1] == last["celery"]
    assert stored["celery"]["traceback"].strip().splitlines()[-1] == last["celery"]
