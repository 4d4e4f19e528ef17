"""``rpc://`` results on RabbitMQ: each result is a message to the sending client's reply queue
(Celery's RPC backend wire shape), so our client and Celery's read each other's workers' results.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.integration.conftest import client_app
from tests.integration.harness import ROOT, CeleryWorkerProcess, wait_for
from tests.integration.test_amqp_interop import INTEROP, OurWorker

pytestmark = pytest.mark.integration
HOST = socket.gethostname()


@pytest.fixture
def rpc_client(amqp_url: str) -> Iterator[ModuleType]:
    """tests/apps/interop.py as OUR client on RabbitMQ with ``result_backend = "rpc://"``."""
    for module in client_app(INTEROP, amqp_url):
        module.app.conf.result_backend = "rpc://"
        yield module


@pytest.fixture
def our_rpc_worker(amqp_url: str, tmp_path: Path) -> Iterator[Callable[..., OurWorker]]:
    started: list[OurWorker] = []

    def start(*args: str) -> OurWorker:
        env = {**os.environ, "TQCTL_BROKER": amqp_url, "TQCTL_BACKEND": "rpc://", "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", "tqctl", "worker", "-A", INTEROP, "-c", "2", "-n", f"ours1@{HOST}", *args]
        worker = OurWorker([*argv, "-l", "info"], tmp_path / "ours1.log", env)
        started.append(worker)
        return worker.wait_ready(60)  # type: ignore[no-any-return]

    yield start
    for worker in started:
        worker.close()


@pytest.fixture
def celery_rpc_worker(
    amqp_url: str, celery_processes: Callable[..., CeleryWorkerProcess]
) -> Callable[[], CeleryWorkerProcess]:
    env = {"INTEROP_BROKER": amqp_url, "INTEROP_BACKEND": "rpc://"}
    return lambda: celery_processes("tests.apps.celery_interop", "celery", "celery1", env)


@pytest.fixture
def celery_rpc_client(amqp_url: str) -> Iterator[Any]:
    import celery

    app = celery.Celery("client", broker=amqp_url, backend="rpc://")
    yield app
    app.close()


def test_delay_get_over_rpc_with_our_prefork_worker(rpc_client: ModuleType, our_rpc_worker: Any) -> None:
    worker = our_rpc_worker("-P", "prefork")  # results are sent from the pool's child processes
    results = [rpc_client.add.delay(i, i) for i in range(10)]
    assert [r.get(timeout=30) for r in reversed(results)] == [2 * i for i in reversed(range(10))]
    with pytest.raises(rpc_client.PaymentDeclined, match="card expired"):
        rpc_client.fail.delay("PaymentDeclined", "card expired").get(timeout=30)
    assert rpc_client.whoami.delay().get(timeout=30) == "tqctl"
    polled = rpc_client.add.delay(20, 22)
    wait_for(polled.ready, 30, "ready() to see the reply")  # get_meta reads what has arrived
    assert polled.state == "SUCCESS" and polled.result == 42 and polled.get(timeout=1) == 42
    log = worker.log()
    assert "could not be recorded" not in log and "rpc:// results" in log  # the startup note


def test_a_celery_worker_replies_to_our_rpc_client(rpc_client: ModuleType, celery_rpc_worker: Any) -> None:
    worker = celery_rpc_worker()
    results = [rpc_client.add.delay(i, 1) for i in range(5)]
    assert [r.get(timeout=30) for r in reversed(results)] == [i + 1 for i in reversed(range(5))]
    assert rpc_client.whoami.delay().get(timeout=30) == "celery"
    with pytest.raises(ValueError, match="no such thing"):
        rpc_client.fail.delay("ValueError", "no such thing").get(timeout=30)
    assert "rpc" in worker.log()


def test_our_worker_replies_to_a_celery_rpc_client(celery_rpc_client: Any, our_rpc_worker: Any) -> None:
    our_rpc_worker("-P", "threads")
    results = [celery_rpc_client.send_task("interop.add", args=[i, 2]) for i in range(5)]
    assert [r.get(timeout=30) for r in reversed(results)] == [i + 2 for i in reversed(range(5))]
    assert celery_rpc_client.send_task("interop.whoami").get(timeout=30) == "tqctl"
    with pytest.raises(ValueError, match="no such thing"):
        celery_rpc_client.send_task("interop.fail", args=["ValueError", "no such thing"]).get(timeout=30)


def test_outcomes_settled_outside_a_run_reach_the_rpc_client(
    rpc_client: ModuleType, celery_rpc_client: Any, our_rpc_worker: Any
) -> None:
    """Revoked before it ran, or unknown to the worker: no task runs, yet the sender's ``get()``
    raises at once (the reply address comes from the message), for our client and Celery's."""
    from celery.exceptions import TaskRevokedError as CeleryRevoked

    from engine.exceptions import NotRegistered, TaskRevokedError

    our_rpc_worker("-P", "threads")
    ours = rpc_client.add.apply_async((1, 1), countdown=3)
    ours.revoke()
    theirs = celery_rpc_client.send_task("interop.add", args=[1, 1], countdown=3)
    theirs.revoke()
    unknown = rpc_client.app.send_task("interop.no_such_task")
    with pytest.raises(NotRegistered):
        unknown.get(timeout=30)
    with pytest.raises(TaskRevokedError):
        ours.get(timeout=30)
    with pytest.raises(CeleryRevoked):
        theirs.get(timeout=30)
    assert rpc_client.add.delay(2, 2).get(timeout=30) == 4  # and the worker goes on
