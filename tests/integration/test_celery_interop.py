"""Celery interop with the REAL celery package, both directions, on one real server.

* A Celery 5.7 client (``celery.Celery(...).send_task``) feeds OUR worker process, and Celery's
  ``AsyncResult.get()`` reads what our worker stored.
* OUR client feeds a real Celery worker process (``python -m celery ... worker -P solo``), and our
  ``AsyncResult.get()`` reads what Celery stored.
* ``self.retry(countdown=...)`` messages cross between the two engines, and failures keep their
  exception type and message in both directions.

The two sides run the same task functions under the same names (tests/apps/interop.py, registered
on Celery by tests/apps/celery_interop.py). celery is imported only inside this module's fixtures.

URLs: the session server is ``redis+socket:///path``. kombu accepts it for the broker; Celery 5.7's
backend lookup splits ``redis+socket`` into the ``redis`` backend with a ``socket://`` URL (its
unix-socket form), so the very same URL serves Celery's broker and backend unchanged. Each test
also runs on the session's RabbitMQ (``[amqp]``): both engines share its queues, and both keep
results in that same Redis (``backend_url``), the usual Celery pairing.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from engine import exceptions as ours
from tests.integration.harness import CeleryWorkerProcess, WorkerProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.amqp_too]

HOST = socket.gethostname()
INTEROP = "tests.apps.interop"


@pytest.fixture
def celery_worker(
    broker_url: str, backend_url: str, celery_processes: Callable[..., CeleryWorkerProcess]
) -> Callable[..., CeleryWorkerProcess]:
    """``python -m celery -A tests.apps.celery_interop worker`` as a subprocess, with its log."""

    def start(queues: str = "celery", name: str = "celery1") -> CeleryWorkerProcess:
        env = {"INTEROP_BROKER": broker_url, "INTEROP_BACKEND": backend_url}
        return celery_processes("tests.apps.celery_interop", queues, name, env)

    return start


@pytest.fixture
def our_worker(start_worker: Callable[..., WorkerProcess]) -> Callable[..., WorkerProcess]:
    def start(*args: str, name: str = "ours1") -> WorkerProcess:
        return start_worker("-P", "threads", "-c", "2", *args, name=name, app=INTEROP)

    return start


@pytest.fixture
def celery_client(broker_url: str, backend_url: str) -> Iterator[Any]:
    """A plain Celery 5.7 client: nothing but a broker and a backend URL, as a user would write."""
    import celery

    assert celery.__version__.startswith("5.7"), celery.__version__
    app = celery.Celery("client", broker=broker_url, backend=backend_url)
    app.conf.broker_connection_retry_on_startup = True
    yield app
    app.close()


def ledger_times(path: Path, prefix: str) -> list[float]:
    return [float(line.rsplit(" ", 1)[1]) for line in path.read_text().splitlines() if line.startswith(prefix)]


# -- (1) a Celery client, our worker --------------------------------------------------------------


def test_celery_client_task_runs_on_our_worker(celery_client: Any, our_worker: Any, interop: Any) -> None:
    our_worker()
    result = celery_client.send_task("interop.add", args=[2, 3])
    assert result.get(timeout=10) == 5
    assert result.state == "SUCCESS" and result.successful() and result.ready()
    assert celery_client.send_task("interop.whoami").get(timeout=10) == "tqctl"
    assert celery_client.send_task("interop.add", kwargs={"x": 1, "y": 1}, priority=5).get(timeout=10) == 2
    assert celery_client.signature("interop.add", args=(20, 22)).apply_async().get(timeout=10) == 42

    info_result = celery_client.send_task("interop.request_info", headers={"x-tenant": "acme"})
    info = info_result.get(timeout=10)
    assert info["impl"] == "tqctl" and info["id"] == info_result.id
    assert info["root_id"] == info_result.id and info["parent_id"] is None and info["retries"] == 0
    assert info["routing_key"] == "celery" and info["header"] == "acme"
    assert info["hostname"] == f"ours1@{HOST}"


def test_celery_client_countdown_and_expires_on_our_worker(celery_client: Any, our_worker: Any, interop: Any) -> None:
    import celery.exceptions

    our_worker()
    sent = time.time()
    due = celery_client.send_task("interop.request_info", countdown=1.0)
    expired = celery_client.send_task("interop.add", args=[1, 1], countdown=1.0, expires=0.3)
    assert not due.ready()
    assert due.get(timeout=10)["started"] >= sent + 1.0  # not run before due
    assert interop.app.AsyncResult(due.id).date_done is not None
    with pytest.raises(celery.exceptions.TaskRevokedError):
        expired.get(timeout=10)
    assert expired.state == "REVOKED"


def test_our_link_runs_on_celerys_side_and_celerys_on_ours(
    celery_client: Any, celery_worker: Any, our_worker: Any, interop: Any
) -> None:
    celery_worker(queues="theirs")
    our_worker("-Q", "ours")
    callback_id = str(uuid.uuid4())
    parent = interop.add.apply_async(
        (1, 2), queue="theirs", link=interop.add.s(10).set(task_id=callback_id, queue="theirs")
    )
    assert parent.get(timeout=10) == 3
    assert interop.app.AsyncResult(callback_id).get(timeout=10) == 13

    callback_id = str(uuid.uuid4())
    link = celery_client.signature("interop.whoami", options={"task_id": callback_id, "queue": "ours"}, immutable=True)
    parent = celery_client.send_task("interop.add", args=[5, 5], queue="ours", link=link)
    assert parent.get(timeout=10) == 10
    assert celery_client.AsyncResult(callback_id).get(timeout=10) == "tqctl"


# -- (2) our client, a Celery worker --------------------------------------------------------------


def test_our_client_task_runs_on_a_celery_worker(celery_worker: Any, interop: Any) -> None:
    celery_worker()
    result = interop.add.delay(2, 3)
    assert result.get(timeout=10) == 5
    assert result.state == "SUCCESS" and result.successful() and result.ready()
    assert interop.whoami.delay().get(timeout=10) == "celery"
    assert interop.app.send_task("interop.add", args=[40, 2]).get(timeout=10) == 42
    assert interop.add.apply_async((1, 1), priority=7).get(timeout=10) == 2

    sent = time.time()
    info_result = interop.request_info.apply_async(headers={"x-tenant": "acme"}, countdown=0.5)
    info = info_result.get(timeout=10)
    assert info["started"] >= sent + 0.5
    assert info["impl"] == "celery" and info["id"] == info_result.id
    assert info["root_id"] == info_result.id and info["parent_id"] is None and info["retries"] == 0
    assert info["routing_key"] == "celery" and info["header"] == "acme"
    assert info["hostname"] == f"celery1@{HOST}"

    expired = interop.add.apply_async((1, 1), countdown=1.0, expires=0.3)
    with pytest.raises(ours.TaskRevokedError):
        expired.get(timeout=10)
    assert expired.state == "REVOKED"


# -- (3) failures and retries, both ways ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["ValueError", "KeyError", "PaymentDeclined"])
def test_failures_keep_type_and_message_both_ways(
    celery_client: Any, celery_worker: Any, our_worker: Any, interop: Any, kind: str
) -> None:
    celery_worker(queues="theirs")
    our_worker("-Q", "ours")
    expected = interop.ERRORS[kind]

    on_ours = celery_client.send_task("interop.fail", args=[kind, "card declined"], queue="ours")
    with pytest.raises(expected) as raised:
        on_ours.get(timeout=10)
    assert type(raised.value) is expected and raised.value.args == ("card declined",)
    assert on_ours.state == "FAILURE" and on_ours.failed()
    assert f"{kind}: " in on_ours.traceback and "interop.py" in on_ours.traceback

    on_celery = interop.fail.apply_async((kind, "card declined"), queue="theirs")
    with pytest.raises(expected) as raised:
        on_celery.get(timeout=10)
    assert type(raised.value) is expected and raised.value.args == ("card declined",)
    assert on_celery.state == "FAILURE" and on_celery.failed()
    assert f"{kind}: " in on_celery.traceback and "celery/app/trace.py" in on_celery.traceback


def test_retry_on_our_worker_read_by_celery(celery_client: Any, our_worker: Any, interop: Any, ledger: Path) -> None:
    import celery.exceptions

    our_worker()
    result = celery_client.send_task("interop.flaky", args=[2])
    assert result.get(timeout=15) == {"impl": "tqctl", "retries": 2}
    tries = ledger_times(ledger, "flaky tqctl")
    assert len(tries) == 3 and all(b - a >= 0.2 for a, b in pairwise(tries))  # countdown=0.2 honoured

    exhausted = celery_client.send_task("interop.flaky", args=[9])
    with pytest.raises(KeyError) as raised:
        exhausted.get(timeout=15)
    assert raised.value.args == ("attempt 3",)  # max_retries=3: the last error stands

    gave_up = celery_client.send_task("interop.give_up")
    with pytest.raises(celery.exceptions.MaxRetriesExceededError, match="Can't retry interop.give_up"):
        gave_up.get(timeout=15)


def test_retry_on_a_celery_worker_read_by_us(celery_worker: Any, interop: Any, ledger: Path) -> None:
    celery_worker()
    result = interop.flaky.delay(2)
    assert result.get(timeout=15) == {"impl": "celery", "retries": 2}
    tries = ledger_times(ledger, "flaky celery")
    assert len(tries) == 3 and all(b - a >= 0.2 for a, b in pairwise(tries))

    exhausted = interop.flaky.delay(9)
    with pytest.raises(KeyError) as raised:
        exhausted.get(timeout=15)
    assert raised.value.args == ("attempt 3",)

    gave_up = interop.give_up.delay()
    with pytest.raises(ours.MaxRetriesExceededError, match="Can't retry interop.give_up"):
        gave_up.get(timeout=15)
    assert gave_up.state == "FAILURE"


@pytest.mark.parametrize("client_side", ["ours", "celery"])
def test_retry_messages_cross_between_the_engines(
    celery_client: Any, celery_worker: Any, our_worker: Any, interop: Any, client_side: str
) -> None:
    """Each retry is re-published to the other engine's queue: our retry runs on Celery and back."""
    celery_worker(queues="theirs")
    our_worker("-Q", "ours")
    path = ["theirs", "ours", "theirs"]  # retries 1, 2, 3 go here; the first run is on "ours"
    if client_side == "ours":
        result = interop.hop.apply_async((path, []), queue="ours")
    else:
        result = celery_client.send_task("interop.hop", args=[path, []], queue="ours")
    seen = result.get(timeout=20)
    assert [step[0] for step in seen] == ["tqctl", "celery", "tqctl", "celery"]
    assert [step[1] for step in seen] == [0, 1, 2, 3]
    assert {step[2] for step in seen} == {result.id}  # one task id throughout
    assert seen[0][3] is None and all(step[3] == result.id for step in seen[1:])  # parent_id = the retried task
    assert {step[4] for step in seen} == {result.id}  # root_id


@pytest.mark.parametrize("with_exc", [True, False])
def test_the_retry_state_reads_the_same_both_ways(
    celery_client: Any, celery_worker: Any, our_worker: Any, interop: Any, with_exc: bool
) -> None:
    """While the retried copy waits for its countdown, RETRY (with the exc, or null) is what both read."""
    celery_worker(queues="theirs")
    our_worker("-Q", "ours")
    on_ours = celery_client.send_task("interop.retry_once", args=[with_exc], queue="ours")
    on_celery = interop.retry_once.apply_async((with_exc,), queue="theirs")
    wait_for(lambda: on_ours.state == "RETRY" and on_celery.state == "RETRY", 10, "both tasks in RETRY")
    for handle in (on_ours, on_celery):
        assert not handle.ready()
        if with_exc:
            assert isinstance(handle.result, KeyError) and handle.result.args == ("later",)
        else:
            assert handle.result is None
        assert "Retry" in handle.traceback and "interop.py" in handle.traceback
    assert on_ours.get(timeout=10) == "done on tqctl"
    assert on_celery.get(timeout=10) == "done on celery"


def test_unknown_names_ignore_result_and_errbacks_cross(
    celery_client: Any, celery_worker: Any, our_worker: Any, interop: Any, redis_client: Any
) -> None:
    import celery.exceptions

    celery_worker(queues="theirs")
    our_worker("-Q", "ours")
    with pytest.raises(celery.exceptions.NotRegistered, match="interop.nope"):
        celery_client.send_task("interop.nope", queue="ours").get(timeout=10)
    with pytest.raises(ours.NotRegistered, match="interop.nope"):
        interop.app.send_task("interop.nope", queue="theirs").get(timeout=10)

    quiet_ours = celery_client.send_task("interop.add", args=[1, 1], queue="ours", ignore_result=True)
    quiet_celery = interop.add.apply_async((1, 1), queue="theirs", ignore_result=True)
    assert celery_client.send_task("interop.add", args=[2, 2], queue="ours").get(timeout=10) == 4
    assert interop.add.apply_async((2, 2), queue="theirs").get(timeout=10) == 4
    assert redis_client.exists(f"celery-task-meta-{quiet_ours.id}", f"celery-task-meta-{quiet_celery.id}") == 0

    errback_id = str(uuid.uuid4())
    errback = celery_client.signature(
        "interop.whoami", options={"task_id": errback_id, "queue": "theirs"}, immutable=True
    )
    failing = celery_client.send_task("interop.fail", args=["ValueError", "x"], queue="ours", link_error=errback)
    with pytest.raises(ValueError):
        failing.get(timeout=10)
    assert celery_client.AsyncResult(errback_id).get(timeout=10) == "celery"  # our worker published it
