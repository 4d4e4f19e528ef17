"""Celery 5.7 interop on RabbitMQ, both directions, results in the session's Redis.

The same task functions run on both engines (tests/apps/interop.py, registered on Celery by
tests/apps/celery_interop.py), as in test_celery_interop.py on Redis. Both sides declare the
queue themselves; RabbitMQ would refuse the second declaration if they differed.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.integration.conftest import client_app
from tests.integration.harness import CeleryWorkerProcess, ChildProcess

pytestmark = pytest.mark.integration
HOST = socket.gethostname()
INTEROP = "tests.apps.interop"


class OurWorker(ChildProcess):
    """``tqctl worker`` with a broker and a result backend of its own (the harness's WorkerProcess
    keeps the backend on the broker)."""

    ready_marker = " ready: "


@pytest.fixture
def interop_mq(amqp_url: str, redis_url: str, redis_client: object) -> Iterator[ModuleType]:
    """tests/apps/interop.py as OUR client on RabbitMQ, results in Redis."""
    for module in client_app(INTEROP, amqp_url):
        module.app.conf.result_backend = redis_url
        yield module


@pytest.fixture
def our_mq_worker(amqp_url: str, redis_url: str, tmp_path: Path) -> Iterator[Callable[..., OurWorker]]:
    started: list[OurWorker] = []

    def start(*args: str, name: str = "ours1") -> OurWorker:
        import os

        from tests.integration.harness import ROOT

        env = {**os.environ, "TQCTL_BROKER": amqp_url, "TQCTL_BACKEND": redis_url, "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", "tqctl", "worker", "-A", INTEROP, "-P", "threads", "-c", "2"]
        worker = OurWorker([*argv, "-n", f"{name}@%h", "-l", "info", *args], tmp_path / f"{name}.log", env)
        started.append(worker)
        return worker.wait_ready(60)  # type: ignore[no-any-return]

    yield start
    for worker in started:
        worker.close()


@pytest.fixture
def celery_mq_worker(
    amqp_url: str, redis_url: str, celery_processes: Callable[..., CeleryWorkerProcess]
) -> Callable[..., CeleryWorkerProcess]:
    def start(queues: str = "celery", name: str = "celery1") -> CeleryWorkerProcess:
        return celery_processes(
            "tests.apps.celery_interop", queues, name, {"INTEROP_BROKER": amqp_url, "INTEROP_BACKEND": redis_url}
        )

    return start


@pytest.fixture
def celery_mq_client(amqp_url: str, redis_url: str) -> Iterator[Any]:
    import celery

    app = celery.Celery("client", broker=amqp_url, backend=redis_url)
    app.conf.broker_connection_retry_on_startup = True
    yield app
    app.close()


def test_celery_client_on_rabbitmq_feeds_our_worker(celery_mq_client: Any, our_mq_worker: Any, interop_mq: Any) -> None:
    our_mq_worker()
    assert celery_mq_client.send_task("interop.add", args=[2, 3]).get(timeout=30) == 5
    assert celery_mq_client.send_task("interop.whoami").get(timeout=30) == "tqctl"
    sent = time.time()
    result = celery_mq_client.send_task("interop.request_info", headers={"x-tenant": "acme"}, countdown=0.5)
    info = result.get(timeout=30)
    assert info["impl"] == "tqctl" and info["id"] == result.id and info["started"] >= sent + 0.5
    assert info["routing_key"] == "celery" and info["header"] == "acme" and info["hostname"] == f"ours1@{HOST}"


def test_our_client_on_rabbitmq_feeds_a_celery_worker(celery_mq_worker: Any, interop_mq: Any) -> None:
    worker = celery_mq_worker()
    assert interop_mq.add.delay(2, 3).get(timeout=30) == 5
    assert interop_mq.whoami.delay().get(timeout=30) == "celery"
    sent = time.time()
    result = interop_mq.request_info.apply_async(headers={"x-tenant": "acme"}, countdown=0.5)
    info = result.get(timeout=30)
    assert info["impl"] == "celery" and info["id"] == result.id and info["started"] >= sent + 0.5
    assert info["routing_key"] == "celery" and info["header"] == "acme" and info["hostname"] == f"celery1@{HOST}"
    assert "Traceback" not in worker.log()


def test_a_retry_crosses_between_the_engines_on_rabbitmq(
    celery_mq_worker: Any, our_mq_worker: Any, interop_mq: Any
) -> None:
    celery_mq_worker(queues="theirs")
    our_mq_worker("-Q", "ours", "-P", "prefork")  # the retries are published from a forked child
    seen = interop_mq.hop.apply_async((["theirs", "ours", "theirs"], []), queue="ours").get(timeout=60)
    assert [hop[0] for hop in seen] == ["tqctl", "celery", "tqctl", "celery"]
    assert [hop[1] for hop in seen] == [0, 1, 2, 3]


# -- Celery's tools on RabbitMQ see our worker ------------------------------------------------------


def test_celery_inspect_and_control_reach_our_worker_over_rabbitmq(
    celery_mq_client: Any, our_mq_worker: Any, interop_mq: Any
) -> None:
    import celery.exceptions

    our_mq_worker()
    name = f"ours1@{HOST}"
    inspect = celery_mq_client.control.inspect(destination=[name], timeout=5)
    assert inspect.ping() == {name: {"ok": "pong"}}
    assert "interop.add" in inspect.registered()[name]
    revoked_id = "amqp-revoked-1"
    celery_mq_client.control.revoke(revoked_id, destination=[name], reply=True, timeout=5)
    with pytest.raises(celery.exceptions.TaskRevokedError):
        celery_mq_client.send_task("interop.add", args=[1, 1], task_id=revoked_id).get(timeout=30)
    assert celery_mq_client.send_task("interop.add", args=[1, 2]).get(timeout=30) == 3  # still serving


def test_celery_event_receiver_on_rabbitmq_sees_our_workers_events(
    celery_mq_client: Any, our_mq_worker: Any, interop_mq: Any
) -> None:
    our_mq_worker()
    name = f"ours1@{HOST}"
    seen: list[dict[str, Any]] = []
    sent: Any = None
    with celery_mq_client.connection_for_read() as conn:
        receiver = celery_mq_client.events.Receiver(conn, handlers={"*": seen.append})
        for _ in receiver.consume(limit=None, timeout=30, safety_interval=0.5):
            if sent is None and any(e["type"] == "worker-heartbeat" and e["hostname"] == name for e in seen):
                sent = celery_mq_client.send_task("interop.add", args=[2, 2])  # the receiver's queue is bound
            if sent is not None and any(e["type"] == "task-succeeded" and e.get("uuid") == sent.id for e in seen):
                break
    types = [e["type"] for e in seen if e.get("uuid") == sent.id]
    assert types[0] == "task-received" and "task-started" in types and types[-1] == "task-succeeded"
