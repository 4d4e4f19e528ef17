"""Prometheus metrics with real processes: ``tqctl metrics`` (the exporter) and ``tqctl worker
--metrics-port``, scraped over HTTP and parsed with prometheus_client's own parser while tasks
succeed, fail, wait in a queue nobody consumes and land in the dead-letter store. Every count is
compared with what the test sent. The same exporter then watches a real Celery 5.7 worker.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import CeleryWorkerProcess, WorkerProcess
from tests.integration.metrics_helpers import Exporter, endpoint_in, scrape, value, wait_value

SHOP = "tests.apps.shop"


@pytest.fixture
def exporter(broker_url: str, tmp_path: Path) -> Iterator[Callable[[], Exporter]]:
    started: list[Exporter] = []

    def start() -> Exporter:
        proc = Exporter(broker_url, tmp_path / f"exporter{len(started)}.log")
        started.append(proc)
        return proc.wait_ready(20)

    yield start
    for proc in started:
        proc.close()


def test_exporter_and_worker_endpoint_count_what_was_sent(
    shop, start_worker: Callable[..., WorkerProcess], exporter: Callable[[], Exporter]
) -> None:
    url = exporter().endpoint()  # subscribed to events before it listens: nothing sent below is missed
    w1 = start_worker("-P", "prefork", "-c", "2", "--metrics-port", "0", name="w1")
    worker_url = endpoint_in(w1.log())
    node = f"w1@{socket.gethostname()}"
    wait_value(url, "tqctl_workers_online", 1.0)

    for i in range(5):
        shop.add.delay(i, i)
    for _ in range(3):
        shop.fail.delay("boom")
    shop.app.send_task("no.such.task")  # the worker dead-letters what it cannot run
    for i in range(2):
        shop.add.apply_async((i, i), queue="nobody")  # a queue without a consumer

    add, fail = f"{SHOP}.add", f"{SHOP}.fail"
    wait_value(url, "tqctl_tasks_total", 5.0, name=add, state="succeeded")
    wait_value(url, "tqctl_tasks_total", 3.0, name=fail, state="failed")
    wait_value(url, "tqctl_dead_letters", 1.0)
    got = wait_value(url, "tqctl_queue_depth", 2.0, queue="nobody")  # found by a scan: a poll later
    assert value(got, "tqctl_tasks_total", name=add, state="sent") == 7.0  # 5 run, 2 waiting
    assert value(got, "tqctl_tasks_total", name=add, state="started") == 5.0
    assert value(got, "tqctl_tasks_total", name=fail, state="received") == 3.0
    assert value(got, "tqctl_task_runtime_seconds_count", name=add) == 5.0
    assert value(got, "tqctl_task_runtime_seconds_count", name=fail) == 3.0
    assert value(got, "tqctl_task_wait_seconds_count", name=add) == 5.0
    assert value(got, "tqctl_queue_depth", queue="celery") == 0.0
    assert value(got, "tqctl_queue_consumers", queue="nobody") == 0.0
    assert value(got, "tqctl_queue_consumers", queue="celery") == 1.0
    assert (value(got, "tqctl_queue_oldest_age_seconds", queue="nobody") or 0) > 0
    assert value(got, "tqctl_failure_groups_open") == 1.0  # three identical failures: one group
    assert value(got, "tqctl_worker_busy", worker=node) == 0.0
    assert value(got, "tqctl_broker_up") == 1.0

    # The worker's own endpoint: the same counts, from its main process (the tasks ran in children).
    own = wait_value(worker_url, "tqctl_tasks_total", 5.0, name=add, state="succeeded")
    assert value(own, "tqctl_tasks_total", name=fail, state="failed") == 3.0
    assert value(own, "tqctl_task_runtime_seconds_count", name=add) == 5.0
    assert value(own, "tqctl_task_wait_seconds_count", name=fail) == 3.0  # from the messages' sent_at
    assert value(own, "tqctl_worker_concurrency", worker=node) == 2.0
    assert value(own, "tqctl_worker_busy", worker=node) == 0.0


def test_exporter_watches_a_celery_fleet(
    broker_url: str, celery_processes: Callable[..., CeleryWorkerProcess], exporter: Callable[[], Exporter]
) -> None:
    os.environ["METRICS_BROKER"] = broker_url  # the client side of tests.apps.celery_metrics
    from tests.apps import celery_metrics

    celery_metrics.app.conf.broker_url = broker_url
    url = exporter().endpoint()
    celery_processes("tests.apps.celery_metrics", "celery", "c1", {"METRICS_BROKER": broker_url})
    wait_value(url, "tqctl_workers_online", 1.0)
    try:
        for i in range(4):
            celery_metrics.ok.delay(i)
        for _ in range(2):
            celery_metrics.boom.delay()
        got = wait_value(url, "tqctl_tasks_total", 4.0, name="cm.ok", state="succeeded")
        got = wait_value(url, "tqctl_tasks_total", 2.0, name="cm.boom", state="failed")
    finally:
        celery_metrics.app.close()
        os.environ.pop("METRICS_BROKER", None)
    assert value(got, "tqctl_tasks_total", name="cm.ok", state="sent") == 4.0
    assert value(got, "tqctl_task_runtime_seconds_count", name="cm.ok") == 4.0
    # A wait is measured when both the start and the client's task-sent are in, whichever comes
    # last: a fast failure's task-sent may still be on its way when its task-failed is counted.
    wait_value(url, "tqctl_task_wait_seconds_count", 2.0, name="cm.boom")
    got = wait_value(url, "tqctl_queue_consumers", 1.0, queue="celery")
    assert value(got, "tqctl_worker_busy", worker=f"c1@{socket.gethostname()}") == 0.0
    assert scrape(url)  # still serving
