"""``tqctl worker -b amqp://…``: our worker on the private RabbitMQ, results in the session's Redis."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import amqp
import pytest

from engine.broker import connect
from engine.broker.amqp_delay import LEVELS, level_name
from engine.exceptions import TimeoutError
from tests.integration.conftest import client_app
from tests.integration.harness import WorkerProcess, wait_for
from tests.integration.rabbitmq import RabbitMQ

pytestmark = pytest.mark.integration
APP = "tests.apps.amqp_app"


@pytest.fixture
def mq_app(amqp_url: str, redis_url: str, redis_client: object) -> Iterator[ModuleType]:
    """tests/apps/amqp_app.py as a client here: tasks to RabbitMQ, results from Redis."""
    for module in client_app(APP, amqp_url):
        module.app.conf.result_backend = redis_url
        yield module


@pytest.fixture
def mq_worker(amqp_url: str, redis_url: str, tmp_path: Path, ledger: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, name: str = "w1") -> WorkerProcess:
        env = {"LEDGER": str(ledger), "AMQP_TEST_BACKEND": redis_url}
        argv = ["-n", f"{name}@%h", "-l", "info", *args]
        proc = WorkerProcess(amqp_url, argv, tmp_path / f"{name}.log", env, app=APP)
        started.append(proc)
        return proc.wait_ready(60)

    yield start
    for proc in started:
        proc.close()


def test_worker_runs_tasks_with_results_in_redis_and_says_what_is_off(
    mq_app: ModuleType, mq_worker: Callable[..., WorkerProcess]
) -> None:
    worker = mq_worker("-c", "2")
    results = [mq_app.add.delay(i, i) for i in range(20)]
    assert [r.get(timeout=30) for r in results] == [2 * i for i in range(20)]
    assert mq_app.add.apply_async((1, 2), countdown=0.5).get(timeout=30) == 3
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    log = worker.log()
    assert " stopped" in log
    assert log.count("is AMQP (preview): events and remote control are on RabbitMQ") == 1
    assert "Traceback" not in log


def test_sigkilled_worker_has_its_late_ack_task_redelivered_once(
    mq_app: ModuleType, mq_worker: Callable[..., WorkerProcess], ledger: Path
) -> None:
    first = mq_worker("-c", "1", name="w1")
    result = mq_app.slow_late.delay(3.0)
    wait_for(lambda: "start" in ledger.read_text(), 30, "the task to start")
    first.signal(signal.SIGKILL)
    first.kill_group()
    mq_worker("-c", "1", name="w2")
    assert result.get(timeout=60) == "done"
    lines = ledger.read_text().splitlines()
    starts = [line for line in lines if line.startswith("start")]
    assert len(starts) == 2 and "redelivered=False" in starts[0] and "redelivered=True" in starts[1]
    assert len([line for line in lines if line.startswith("end")]) == 1


def test_malformed_message_is_dead_lettered_not_looped(
    rabbitmq: RabbitMQ, amqp_url: str, mq_app: ModuleType, mq_worker: Callable[..., WorkerProcess]
) -> None:
    worker = mq_worker("-c", "1")
    conn = amqp.Connection(f"127.0.0.1:{rabbitmq.port}", userid="guest", password="guest")
    conn.connect()
    try:
        channel = conn.channel()
        bad = amqp.Message(b"[1, 2", content_type="application/json", content_encoding="utf-8", delivery_mode=2)
        bad.properties["application_headers"] = {"task": "tests.apps.amqp_app.add", "id": "bad-1"}
        channel.basic_publish(bad, exchange="", routing_key="celery")
    finally:
        conn.close()
    assert mq_app.add.delay(20, 22).get(timeout=30) == 42  # a sentinel sent after it
    broker = connect(amqp_url)
    try:
        letters = broker.dead_letters()
        assert [(x.task_id, x.reason, x.queue) for x in letters] == [("bad-1", "bad_body", "celery")]
        assert broker.queue_depth("celery") == 0
    finally:
        broker.close()
    assert worker.log().count("dead-lettered a message") == 1


def test_drain_rate(mq_app: ModuleType, mq_worker: Callable[..., WorkerProcess], capsys: pytest.CaptureFixture) -> None:
    """Not a timed assert: prints a rough figure for the report (200 trivial tasks, -c 2 threads)."""
    mq_worker("-c", "2", "-P", "threads")
    started = time.monotonic()
    results = [mq_app.add.delay(i, 1) for i in range(200)]
    sent = time.monotonic() - started
    assert results[-1].get(timeout=60) == 200
    assert all(r.get(timeout=30) == i + 1 for i, r in enumerate(results))
    with capsys.disabled():
        print(f"\n200 delay() in {sent:.2f}s; sent and run in {time.monotonic() - started:.2f}s")


def test_worker_on_amqp_without_a_redis_backend_is_refused_in_one_line(amqp_url: str, tmp_path: Path) -> None:
    proc = WorkerProcess(amqp_url, ["-l", "info"], tmp_path / "w.log", {}, app=APP)
    try:
        assert proc.wait(60) != 0
    finally:
        proc.close()
    out = proc.log().strip()
    assert "needs a Redis result backend" in out and "Traceback" not in out and "guest:guest" not in out


def test_rabbitmq_restart_mid_drain_loses_nothing_and_the_worker_reconnects(
    rabbitmq: RabbitMQ, redis_url: str, mq_app: ModuleType, tmp_path: Path, ledger: Path
) -> None:
    node = RabbitMQ(tmp_path / "own-node").start()  # a node of its own: restarting it is the test
    worker = WorkerProcess(
        node.url, ["-c", "2", "-P", "threads"], tmp_path / "w.log", {"AMQP_TEST_BACKEND": redis_url}, app=APP
    )
    try:
        worker.wait_ready(60)
        mq_app.app.close()
        mq_app.app.conf.broker_url = node.url
        before = [mq_app.add.delay(i, 0) for i in range(300)]
        delayed = mq_app.add.apply_async((5, 5), countdown=3)  # waits in the quorum delay levels
        node.stop()  # durable queue, persistent messages: what was not yet acked is kept on disk
        node.start()
        after = [mq_app.add.delay(i, 1000) for i in range(20)]  # the client reconnects by itself too
        assert [r.get(timeout=90) for r in before] == list(range(300))
        assert [r.get(timeout=90) for r in after] == [1000 + i for i in range(20)]
        try:
            assert delayed.get(timeout=90) == 10
        except TimeoutError:  # seen once in CI; what it takes to tell where the task was
            pytest.fail(f"the delayed task {delayed.id} never ran: {_whereabouts(node, worker, delayed.id)}")
        import celery

        probe = celery.Celery("probe", broker=node.url, set_as_current=False)  # remote control is back too
        try:
            wait_for(lambda: probe.control.inspect(timeout=1).ping(), 30, "celery inspect ping after the restart")
        finally:
            probe.close()
        assert "Traceback" not in worker.log()
    finally:
        mq_app.app.close()
        worker.close()
        node.close()


def _whereabouts(node: RabbitMQ, worker: WorkerProcess, task_id: str) -> str:
    """The delay levels and queues holding messages, the worker's lines about the task (or its
    last lines), and what RabbitMQ logged about dead-lettering: enough to tell a message waiting
    in the levels (RabbitMQ's at-least-once hop retries every 3 minutes by default) from one the
    worker took and lost."""
    depths = []
    conn = amqp.Connection(f"127.0.0.1:{node.port}", userid="guest", password="guest")
    conn.connect()
    try:
        for name in [*(level_name(n) for n in range(LEVELS)), "celery"]:
            channel = conn.channel()
            try:
                _, count, _ = channel.queue_declare(name, passive=True)
                if count:
                    depths.append(f"{name}={count}")
            except amqp.exceptions.NotFound:
                pass
            finally:
                with contextlib.suppress(Exception):
                    channel.close()
    finally:
        conn.close()
    lines = worker.log().splitlines()
    about = [line for line in lines if task_id in line] or lines[-15:]
    dlx = [line for line in node.log().splitlines() if "dlx" in line.lower() and "boot step" not in line]
    return (
        f"queues holding messages: {depths or 'none'}\nworker:\n"
        + "\n".join(about)
        + "\nRabbitMQ on dead-lettering:\n"
        + ("\n".join(dlx[-20:]) or "nothing")
    )


def test_warm_shutdown_hands_reserved_tasks_back_to_rabbitmq(
    mq_app: ModuleType, mq_worker: Callable[..., WorkerProcess], ledger: Path
) -> None:
    first = mq_worker("-c", "1", name="w1")  # prefetch 4: it reserves every one of them
    results = [mq_app.slow_late.delay(0.5) for _ in range(4)]
    wait_for(lambda: "start" in ledger.read_text(), 30, "the first task to start")
    first.signal(signal.SIGTERM)
    assert first.wait(60) == 0
    mq_worker("-c", "1", name="w2")
    assert [r.get(timeout=60) for r in results] == ["done"] * 4
    starts = [line.split()[1] for line in ledger.read_text().splitlines() if line.startswith("start")]
    assert sorted(starts) == sorted(r.id for r in results)  # each ran exactly once
