"""``tqctl worker -b sqs://…``: our worker on a private moto SQS endpoint, results in the session's Redis."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from engine.broker import connect
from engine.broker.base import DeadLetter
from engine.exceptions import ImproperlyConfigured
from engine.redisconn import ConnectionURL
from tests.integration.conftest import client_app
from tests.integration.harness import CeleryWorkerProcess, WorkerProcess, wait_for
from tests.integration.sqs import VISIBILITY, SqsTarget, moto_sqs_server, sqs_target  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration
APP = "tests.apps.sqs_app"


@pytest.fixture
def sqs_app(sqs: SqsTarget, redis_url: str, redis_client: object) -> Iterator[ModuleType]:
    """tests/apps/sqs_app.py as a client here: tasks to SQS, results from Redis."""
    for module in client_app(APP, sqs.url):
        module.app.conf.result_backend = redis_url
        module.app.conf.broker_transport_options = sqs.options
        yield module


@pytest.fixture
def sqs_worker(sqs: SqsTarget, redis_url: str, tmp_path: Path, ledger: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, name: str = "w1") -> WorkerProcess:
        env = {"LEDGER": str(ledger), "SQS_TEST_BACKEND": redis_url, **sqs.env()}
        argv = ["-n", f"{name}@%h", "-l", "info", *args]
        proc = WorkerProcess(sqs.url, argv, tmp_path / f"{name}.log", env, app=APP)
        started.append(proc)
        return proc.wait_ready(60)

    yield start
    for proc in started:
        proc.close()


def test_worker_runs_acks_and_says_once_what_sqs_has_not(
    sqs: SqsTarget, sqs_app: ModuleType, sqs_worker: Callable[..., WorkerProcess], ledger: Path
) -> None:
    worker = sqs_worker("-c", "2")
    results = [sqs_app.add.delay(i, i) for i in range(12)]
    assert [r.get(timeout=60) for r in results] == [2 * i for i in range(12)]
    # A countdown past the visibility timeout: held by the worker, hidden on SQS meanwhile, run once.
    late = sqs_app.add.apply_async((1000, 1), countdown=VISIBILITY + 2)
    assert late.get(timeout=60) == 1001
    # Acked means deleted: nothing visible and nothing in flight (an unacked message is one or the other).
    wait_for(lambda: sqs.counts("celery") == (0, 0), 30, "every message deleted")
    assert ledger.read_text().count("add 1000 1 ") == 1
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    log = worker.log()
    assert log.count("is SQS: no events and no remote control") == 1
    assert "Traceback" not in log and "testing" not in log


def test_sigkilled_worker_has_its_late_ack_task_redelivered_after_the_visibility_timeout(
    sqs_app: ModuleType, sqs_worker: Callable[..., WorkerProcess], ledger: Path
) -> None:
    first = sqs_worker("-c", "1", "-P", "threads", name="w1")
    result = sqs_app.slow_late.delay(60.0)
    wait_for(lambda: "start" in ledger.read_text(), 60, "the task to start")
    first.signal(signal.SIGKILL)
    first.kill_group()
    sqs_worker("-c", "1", "-P", "threads", name="w2")
    assert result.get(timeout=60) == "done"  # the second run's result: SQS showed the message again
    lines = ledger.read_text().splitlines()
    starts = [line for line in lines if line.startswith("start")]
    assert len(starts) == 2 and "redelivered=False" in starts[0] and "redelivered=True" in starts[1]
    assert len([line for line in lines if line.startswith("end")]) == 1


def test_malformed_message_is_dead_lettered_not_looped(
    sqs: SqsTarget, sqs_app: ModuleType, sqs_worker: Callable[..., WorkerProcess]
) -> None:
    worker = sqs_worker("-c", "1", "-P", "threads")
    sqs.server.client().send_message(QueueUrl=sqs.queue_url("celery"), MessageBody="[1, 2")
    assert sqs_app.add.delay(20, 22).get(timeout=60) == 42  # a sentinel sent after it
    broker = connect(ConnectionURL(sqs.url, {"sqs_options": sqs.options}))
    try:
        wait_for(lambda: len(broker.dead_letters()) == 1, 30, "the dead letter")
        letters = broker.dead_letters()
        assert [(x.reason, x.queue, x.raw) for x in letters] == [("invalid_json", "celery", b"[1, 2")]  # as on Redis
        wait_for(lambda: sqs.counts("celery") == (0, 0), 30, "the bad message deleted from its queue")
        assert broker.dead_letter_get(letters[0].id) == letters[0]
        assert broker.dead_letter_delete(letters[0].id) and broker.dead_letters() == []
    finally:
        broker.close()
    assert worker.log().count("dead-lettered a message") >= 1


def test_finding_one_dead_letter_leaves_the_others_of_its_batch_visible(sqs: SqsTarget) -> None:
    """``dead show``/``requeue``/``delete`` stop at the letter they look for: the rest of the batch
    SQS handed over with it is shown again at once (it stayed hidden for 30 s: a ``dead requeue``
    right after a ``dead show`` said 'not found', exit 1, and ``dead ls`` left letters out)."""
    broker = connect(ConnectionURL(sqs.url, {"sqs_options": sqs.options}))
    try:
        ids = [f"letter-{n}" for n in range(4)]
        for n, letter_id in enumerate(ids):
            letter = DeadLetter(letter_id, "celery", "invalid_json", "bad", 1000.0 + n, None, None, "w1", b"[1, 2")
            broker.dead_letter(None, None, letter)
        for letter_id in ids:
            assert broker.dead_letter_get(letter_id) is not None, letter_id
        assert sorted(x.id for x in broker.dead_letters()) == ids
        assert broker.dead_letter_delete(ids[0]) and broker.dead_letter_delete(ids[3])
        assert sorted(x.id for x in broker.dead_letters()) == ids[1:3]
    finally:
        broker.close()


def test_a_celery_client_sends_to_our_worker_over_sqs(
    sqs: SqsTarget, redis_url: str, redis_client: object, sqs_worker: Callable[..., WorkerProcess]
) -> None:
    """Celery 5.7's own client through kombu's SQS transport: the same queue, the same envelope."""
    celery = pytest.importorskip("celery")
    sqs_worker("-c", "1", "-P", "threads")
    client = celery.Celery("interop", broker=sqs.url, backend=redis_url)
    client.conf.broker_transport_options = sqs.options
    try:
        assert client.send_task("tests.apps.sqs_app.add", (2, 3)).get(timeout=60) == 5
        assert client.send_task("tests.apps.sqs_app.add", (4, 5), countdown=1).get(timeout=60) == 9
    finally:
        client.close()


def test_our_client_sends_to_a_celery_worker_over_sqs(
    sqs: SqsTarget, sqs_app: ModuleType, redis_url: str, tmp_path: Path
) -> None:
    """Our envelope, read by Celery 5.7's worker through kombu's SQS transport (its async hub)."""
    pytest.importorskip("celery")
    env = {"SQS_TEST_BACKEND": redis_url, **sqs.env()}
    worker = CeleryWorkerProcess("tests.apps.celery_sqs_app", "celery", "c1", tmp_path / "celery.log", env)
    try:
        worker.wait_ready(60)
        assert sqs_app.add.delay(20, 22).get(timeout=60) == 42
        assert sqs_app.add.apply_async((1, 2), countdown=1).get(timeout=60) == 3
    finally:
        worker.close()


def test_predefined_queues_are_used_as_they_are(
    sqs: SqsTarget, redis_url: str, tmp_path: Path, ledger: Path, sqs_app: ModuleType
) -> None:
    """Celery's ``predefined_queues``: queues made beforehand (by URL), none created or listed."""
    client = sqs.server.client()
    names = {"celery": f"{sqs.prefix}celery", "tqctl.dead": f"{sqs.prefix}tqctl-dead"}
    urls = {name: client.create_queue(QueueName=real)["QueueUrl"] for name, real in names.items()}
    options = {**sqs.options, "predefined_queues": {names[n]: {"url": urls[n]} for n in names}}
    sqs_app.app.conf.broker_transport_options = options
    env = {"LEDGER": str(ledger), "SQS_TEST_BACKEND": redis_url, "SQS_TEST_OPTIONS": json.dumps(options)}
    worker = WorkerProcess(sqs.url, ["-P", "threads", "-c", "1"], tmp_path / "w.log", env, app=APP)
    try:
        worker.wait_ready(60)
        assert sqs_app.add.delay(2, 40).get(timeout=60) == 42
        wait_for(lambda: sqs.counts("celery") == (0, 0), 30, "the message deleted")
        refused = sqs_app.add.s(1, 1).set(queue="elsewhere")  # not predefined: refused in one line
        with pytest.raises(ImproperlyConfigured, match="must be defined in 'predefined_queues'"):
            refused.delay()
    finally:
        worker.close()
    assert "Traceback" not in worker.log()


def test_warm_shutdown_shows_what_the_worker_held_at_once(
    sqs: SqsTarget, redis_url: str, tmp_path: Path, ledger: Path, sqs_app: ModuleType
) -> None:
    """Prefetched messages go back visible at the worker's exit, not after their visibility
    timeout (a minute here: without the hand-back they would still be in flight below)."""
    options = {**sqs.options, "visibility_timeout": 60}
    sqs_app.app.conf.broker_transport_options = options
    env = {"LEDGER": str(ledger), "SQS_TEST_BACKEND": redis_url, "SQS_TEST_OPTIONS": json.dumps(options)}
    argv = ["-P", "threads", "-c", "1", "--prefetch-multiplier", "4", "-l", "info"]
    worker = WorkerProcess(sqs.url, argv, tmp_path / "w.log", env, app=APP)
    try:
        worker.wait_ready(60)
        slow = sqs_app.slow_late.delay(8.0)  # room for a loaded machine to fetch the others meanwhile
        wait_for(lambda: "start" in ledger.read_text(), 60, "the slow task to start")
        for i in range(3):  # sent now: SQS does not keep order, they must not run first
            sqs_app.add.delay(i, i)
        wait_for(lambda: sqs.counts("celery")[1] >= 2, 30, "the worker to hold one of the others or more")
        worker.signal(signal.SIGTERM)
        assert worker.wait(60) == 0
        assert slow.get(timeout=10) == "done"
    finally:
        worker.close()
    assert "handed back" in worker.log()
    assert sqs.counts("celery") == (3, 0)
