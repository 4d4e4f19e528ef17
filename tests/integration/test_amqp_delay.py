"""Countdown and ETA on RabbitMQ spend their delay in Celery 5.5's ``celery_delayed_*`` levels,
not unacked in a worker's memory (RabbitMQ's ``consumer_timeout`` closes such channels).

A task an hour away is looked for where it waits: the level queue its routing key picks
(3600 s = 0b111000010000, so first ``celery_delayed_11``), while its own queue stays empty even
after the worker stops (a held message would be requeued then).
"""

from __future__ import annotations

import datetime as dt
import signal
import time
from collections.abc import Iterator
from typing import Any

import amqp
import amqp.exceptions
import pytest

from tests.integration import test_amqp_interop as interop
from tests.integration.harness import wait_for
from tests.integration.rabbitmq import RabbitMQ

pytestmark = pytest.mark.integration
HOUR_LEVEL = "celery_delayed_11"
# The interop tests' fixtures: our client and worker, Celery's client and worker, on RabbitMQ.
celery_mq_client = interop.celery_mq_client
celery_mq_worker = interop.celery_mq_worker
interop_mq = interop.interop_mq
our_mq_worker = interop.our_mq_worker


def came_out_of_the_levels(routing_key: str) -> bool:
    """Its routing key is the whole seconds of delay in 28 binary digits, then the queue's."""
    words = routing_key.split(".")
    return set(words[:28]) <= {"0", "1"} and "1" in words[:28] and words[28:] == ["celery"]


class Counter:
    """Passive declares on a private channel (a missing queue counts as empty)."""

    def __init__(self, node: RabbitMQ) -> None:
        self.conn = amqp.Connection(f"127.0.0.1:{node.port}", userid="guest", password="guest", connect_timeout=5)
        self.conn.connect()

    def depth(self, queue: str) -> int:
        channel = self.conn.channel()
        try:
            return int(channel.queue_declare(queue, passive=True)[1])
        except amqp.exceptions.NotFound:
            return 0
        finally:
            if channel.is_open:
                channel.close()

    def purge_levels(self) -> None:
        for level in range(28):
            channel = self.conn.channel()
            try:
                channel.queue_purge(f"celery_delayed_{level}")
            except amqp.exceptions.NotFound:
                pass
            finally:
                if channel.is_open:
                    channel.close()


@pytest.fixture
def counter(rabbitmq: RabbitMQ, amqp_url: str) -> Iterator[Counter]:
    c = Counter(rabbitmq)
    c.purge_levels()  # another test's hour-long tasks are not ours to count
    yield c
    c.purge_levels()
    c.conn.close()


def test_a_countdown_waits_in_rabbitmq_and_runs_on_time(counter: Counter, our_mq_worker: Any, interop_mq: Any) -> None:
    worker = our_mq_worker()
    later = interop_mq.add.apply_async((1, 1), countdown=3600)
    assert counter.depth(HOUR_LEVEL) == 1 and counter.depth("celery") == 0
    sent = time.time()
    result = interop_mq.request_info.apply_async(countdown=2)
    info = result.get(timeout=60)
    assert info["started"] >= sent + 2 and info["impl"] == "tqctl"
    assert came_out_of_the_levels(info["routing_key"])
    # Its retry goes to the queue, not to a queue named after the delayed routing key.
    assert interop_mq.retry_once.apply_async((False,), countdown=2).get(timeout=60) == "done on tqctl"
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert counter.depth("celery") == 0 and counter.depth(HOUR_LEVEL) == 1
    assert later.state == "PENDING"


def test_a_celery_clients_eta_is_rerouted_by_our_worker_not_held(
    counter: Counter, celery_mq_client: Any, our_mq_worker: Any, interop_mq: Any
) -> None:
    """A Celery client on classic queues publishes an ETA task straight to its queue."""
    worker = our_mq_worker()
    eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=3600)
    celery_mq_client.send_task("interop.add", args=[1, 2], eta=eta)
    wait_for(lambda: counter.depth(HOUR_LEVEL) == 1, 30, "the worker to re-route the ETA task")
    sent = time.time()
    soon = celery_mq_client.send_task("interop.request_info", countdown=4)
    assert soon.get(timeout=60)["started"] >= sent + 4  # re-routed too (4 s > the 3 s held)
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert counter.depth("celery") == 0  # acked after re-routing: nothing was held to hand back
    assert "Traceback" not in worker.log()


def test_our_countdown_runs_on_a_celery_worker(counter: Counter, celery_mq_worker: Any, interop_mq: Any) -> None:
    worker = celery_mq_worker()
    sent = time.time()
    info = interop_mq.request_info.apply_async(countdown=2).get(timeout=60)
    assert info["impl"] == "celery" and info["started"] >= sent + 2
    assert came_out_of_the_levels(info["routing_key"])
    assert interop_mq.retry_once.apply_async((False,), countdown=2).get(timeout=60) == "done on celery"
    assert "Traceback" not in worker.log()


def test_celery_quorum_worker_shares_our_delay_levels(
    counter: Counter, amqp_url: str, redis_url: str, celery_processes: Any, interop_mq: Any
) -> None:
    """A Celery worker on quorum queues declares the levels at start: RabbitMQ would refuse its
    declaration (and it would log so) if ours differed; our quorum client's countdown reaches it."""
    app = interop_mq.app
    app.close()
    app.conf.task_default_queue_type = "quorum"
    try:
        interop_mq.add.apply_async((0, 0), countdown=3600)  # we declare the levels first (if not yet)
        worker = celery_processes(
            "tests.apps.celery_quorum", "celery", "celeryq", {"INTEROP_BROKER": amqp_url, "INTEROP_BACKEND": redis_url}
        )
        sent = time.time()
        info = interop_mq.request_info.apply_async(countdown=2).get(timeout=60)
    finally:
        app.close()
        app.conf.task_default_queue_type = None
    assert info["impl"] == "celery" and info["started"] >= sent + 2
    assert came_out_of_the_levels(info["routing_key"])
    log = worker.log()
    assert "Failed to" not in log and "PRECONDITION" not in log and "Traceback" not in log, log[-2000:]
