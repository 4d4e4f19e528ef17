"""Celery's task API in real worker processes: signals, hooks, self.request, task logs, stamping,
pydantic, class-based tasks and the start-up settings warnings.

Tasks and receivers come from ``tests/apps/taskapi.py``; each receiver or hook appends a line with
its pid to the ledger, so a test sees both what ran and in which process (worker or pool child).
Absence is only ever asserted after a sentinel task sent later has finished.
"""

from __future__ import annotations

import datetime as dt
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from engine import group
from engine.exceptions import NotRegistered
from engine.stamping import StampingVisitor
from tests.integration.conftest import client_app
from tests.integration.harness import wait_for

pytestmark = pytest.mark.integration
APP = "tests.apps.taskapi"
UTC = dt.timezone.utc


@pytest.fixture
def taskapi(broker_url: str) -> Iterator[ModuleType]:
    yield from client_app(APP, broker_url)


def lines(ledger: Path, prefix: str) -> list[str]:
    return [line for line in ledger.read_text().splitlines() if line.startswith(prefix + " ")]


def pid_of(line: str) -> int:
    return int(line.rsplit("pid=", 1)[1])


def test_celerys_signals_fire_in_the_right_process_with_celerys_arguments(
    taskapi: Any, start_worker: Any, ledger: Path, redis_client: Any
) -> None:
    worker = start_worker("-P", "prefork", "-c", "1", app=APP)
    ok = taskapi.add.delay(2, 3)
    assert ok.get(timeout=30) == 5
    with pytest.raises(ValueError):
        taskapi.explode.delay().get(timeout=30)
    assert taskapi.flaky.delay().get(timeout=30) == 1
    expired = taskapi.add.apply_async((1, 1), expires=dt.datetime.now(UTC) - dt.timedelta(seconds=5))
    unknown = taskapi.app.send_task("tests.apps.taskapi.nowhere")
    redis_client.lpush("celery", b"\xff not a message")
    assert taskapi.add.delay(0, 0).get(timeout=30) == 0  # sentinel: everything sent before was sorted
    with pytest.raises(NotRegistered):
        unknown.get(timeout=10)
    worker.signal(signal.SIGTERM)
    assert worker.wait(60) == 0

    worker_pid = worker.pid
    [init] = lines(ledger, "celeryd_init")
    assert "conf=True" in init and "sender=w1@" in init and pid_of(init) == worker_pid
    assert lines(ledger, "worker_shutting_down") == [f"worker_shutting_down SIGTERM Warm pid={worker_pid}"]
    for name in (
        "import_modules",
        "worker_init",
        "worker_ready",
        "worker_shutdown",
        "after_setup_logger",
        "after_setup_task_logger",
    ):
        assert [pid_of(line) for line in lines(ledger, name)] == [worker_pid], name
    beats = lines(ledger, "heartbeat_sent")  # worker-online and worker-offline at least
    assert len(beats) >= 2 and {pid_of(line) for line in beats} == {worker_pid}
    [child_init] = lines(ledger, "worker_process_init")
    child = pid_of(child_init)
    assert child != worker_pid
    # Celery 5.7's hook before each fork, in the parent (it was missing: an ImportError for apps using it)
    assert [pid_of(x) for x in lines(ledger, "worker_before_create_process")] == [worker_pid]
    text = ledger.read_text()
    assert text.index("worker_before_create_process") < text.index("worker_process_init")
    assert [pid_of(x) for x in lines(ledger, "worker_process_shutdown")] == [child]
    assert "after_setup_task_logger name=celery.task" in ledger.read_text()

    received = lines(ledger, "task_received")
    assert f"task_received tests.apps.taskapi.add {ok.id} pid={worker_pid}" in received
    assert f"task_prerun tests.apps.taskapi.add {ok.id} args=[2, 3] pid={child}" in lines(ledger, "task_prerun")
    assert f"task_postrun tests.apps.taskapi.add {ok.id} state=SUCCESS pid={child}" in lines(ledger, "task_postrun")
    assert f"task_success tests.apps.taskapi.add {ok.id} result=5 pid={child}" in lines(ledger, "task_success")
    [failure] = lines(ledger, "task_failure")
    assert failure.startswith("task_failure tests.apps.taskapi.explode ") and "ValueError einfo=True" in failure
    [retry] = lines(ledger, "task_retry")
    assert "tests.apps.taskapi.flaky" in retry and "retries=0" in retry
    assert lines(ledger, "task_revoked") == [
        f"task_revoked tests.apps.taskapi.add {expired.id} expired=True pid={worker_pid}"
    ]
    assert lines(ledger, "task_unknown") == [f"task_unknown tests.apps.taskapi.nowhere {unknown.id} pid={worker_pid}"]
    assert lines(ledger, "task_rejected") == [f"task_rejected MalformedMessage pid={worker_pid}"]
    log = worker.log()
    assert "Signal handler" in log and "a broken receiver must never stop a task" in log  # logged, task still ran


def test_base_class_hooks_task_logs_throws_and_settings_warnings(taskapi: Any, start_worker: Any, ledger: Path) -> None:
    worker = start_worker("-P", "prefork", "-c", "1", app=APP)
    good = taskapi.add.delay(4, 5)
    assert good.get(timeout=30) == 9
    with pytest.raises(KeyError):
        taskapi.lookup.delay("sku-1").get(timeout=30)
    bad = taskapi.explode.delay()
    with pytest.raises(ValueError):
        bad.get(timeout=30)
    retried = taskapi.flaky.delay()
    assert retried.get(timeout=30) == 1

    name = "tests.apps.taskapi"
    expected_lines = [
        f"before_start {name}.add {good.id} args=[4, 5]",
        f"on_success {name}.add {good.id} retval=9",
        f"after_return {name}.add {good.id} SUCCESS",
        f"on_failure {name}.explode {bad.id} ValueError('unexpected') einfo=ValueError",
        f"after_return {name}.explode {bad.id} FAILURE",
        f"on_retry {name}.flaky {retried.id} ConnectionError('once')",
        f"after_return {name}.flaky {retried.id} SUCCESS",  # hooks run after the result is stored, as in Celery
    ]
    for line in expected_lines:
        wait_for(lambda line=line: line in ledger.read_text(), 20, line)
    assert taskapi.add.delay(0, 0).get(timeout=30) == 0  # sentinel, then count
    wait_for(
        lambda: "after_return tests.apps.taskapi.add" in ledger.read_text().rsplit("before_start", 1)[1],
        20,
        "the sentinel's hooks",
    )
    assert len(re.findall(rf"after_return {name}.flaky {retried.id} ", ledger.read_text())) == 1  # not on retry

    log = worker.log()
    assert re.search(rf"\] {name}\.add\[{good.id}\]: adding 4 and 5", log)  # worker_task_log_format
    expected = re.search(r"raised expected: KeyError\('sku-1'\)\n(.*)\n", log)
    assert expected and "Traceback" not in expected.group(1)
    assert re.search(r"raised unexpected: ValueError\('unexpected'\)\nTraceback", log)
    assert log.count("raised unexpected: ValueError") == 1  # once, not again by the worker
    warnings = [line for line in log.splitlines() if "WARNING" in line and "setting '" in line]
    assert any("'broker_connection_retry_on_startup'" in w and "ignores" in w for w in warnings), warnings
    assert any("'task_acks_lates'" in w and "did you mean 'task_acks_late'" in w for w in warnings), warnings
    assert len(warnings) == 2, warnings  # tqctl_* settings are valid


class Tenant(StampingVisitor):
    def on_signature(self, sig: Any, **headers: Any) -> dict[str, Any]:
        return {"tenant": "acme"}


def test_self_request_stamps_and_a_publish_hook_header_from_real_messages(
    taskapi: Any, start_worker: Any, monkeypatch: pytest.MonkeyPatch, ledger: Path
) -> None:
    monkeypatch.setenv("INJECT_TRACE", "1")  # the publish receivers run in this (client) process
    monkeypatch.setenv("LEDGER", str(ledger))
    start_worker("-P", "prefork", "-c", "1", name="ctx", app=APP)
    result = taskapi.context.apply_async(
        headers={"x-tenant": "acme"}, time_limit=30, soft_time_limit=20, expires=120, priority=3
    )
    info = result.get(timeout=30)
    assert info["id"] == info["correlation_id"] == info["root_id"] == result.id
    assert info["task"] == "tests.apps.taskapi.context" and info["is_eager"] is False
    assert info["called_directly"] is False and info["hostname"].startswith("ctx@")
    assert info["delivery_info"]["routing_key"] == "celery" and info["delivery_info"]["priority"] == 3
    assert (info["timelimit"], info["time_limit"], info["soft_time_limit"]) == ([30, 20], 30, 20)
    assert info["expires"] and info["origin"].startswith("gen")
    assert info["headers"] == {"x-tenant": "acme", "x-trace": "trace-1"} and info["x_trace"] == "trace-1"
    assert info["properties"]["correlation_id"] == result.id
    assert (info["stamps"], info["stamped_headers"]) == ({}, None)
    assert [line.split()[2] for line in lines(ledger, "after_task_publish")] == [result.id]

    sig = taskapi.context.s()
    sig.stamp(visitor=Tenant(), batch="b7")
    stamped = sig.apply_async().get(timeout=30)
    assert stamped["stamps"] == {"tenant": "acme", "batch": "b7"}
    assert sorted(stamped["stamped_headers"]) == ["batch", "tenant"]
    members = group(taskapi.context.s(), taskapi.context.s())
    members.stamp(Tenant())
    assert [r["stamps"] for r in members.apply_async().get(timeout=30)] == [{"tenant": "acme"}] * 2


def test_class_based_task_pydantic_and_typing(taskapi: Any, start_worker: Any, ledger: Path) -> None:
    start_worker("-P", "prefork", "-c", "1", app=APP)
    product = taskapi.multiply.delay(6, 7)
    assert product.get(timeout=30) == 42
    assert f"multiply run acks_late=True request={product.id}" in ledger.read_text()
    receipt = taskapi.place.delay(taskapi.Order(item="tea", quantity=3))  # the model goes as plain data
    assert receipt.get(timeout=30) == {"item": "TEA", "total": 30}
    assert taskapi.place.delay({"item": "tea", "quantity": 2}).get(timeout=30) == {"item": "TEA", "total": 20}
    refused = taskapi.place.delay({"item": "tea"})  # validated on the worker
    with pytest.raises(Exception) as raised:  # noqa: B017 - pydantic's class, rebuilt by name
        refused.get(timeout=30)
    assert type(raised.value).__name__ == "ValidationError" and "quantity" in refused.traceback
    with pytest.raises(TypeError, match="add"):
        taskapi.add.delay(1, 2, 3)  # typing: refused by the caller, nothing sent
    assert taskapi.loose.delay(1, 2, 3).get(timeout=30) == 3  # typing=False


def test_stamps_and_headers_cross_between_celery_and_our_side(
    taskapi: Any, start_worker: Any, celery_processes: Any, broker_url: str
) -> None:
    """A Celery 5.7 client stamps for our worker; our client stamps for a Celery 5.7 worker."""
    import celery

    from tests.apps.celery_canvas import celery_url
    from tests.integration.test_canvas_celery import release_celery_results

    start_worker("-P", "threads", "-c", "1", app=APP)
    celery_processes("tests.apps.celery_taskapi", "celq", "cel", {"TQCTL_BROKER": broker_url})
    url = celery_url(broker_url)
    client = celery.Celery("stamp-client", broker=url, backend=url, set_as_current=False)
    try:
        sig = client.signature("tests.apps.taskapi.context", options={"headers": {"x-tenant": "acme"}})
        sig.stamp(batch="b1")
        seen = client.AsyncResult(sig.apply_async().id).get(timeout=30)
        assert seen["stamps"] == {"batch": "b1"} and seen["stamped_headers"] == ["batch"]
        assert seen["headers"] == {"x-tenant": "acme"}

        ours = taskapi.app.signature("celery_taskapi.context", queue="celq", headers={"x-tenant": "acme"})
        ours.stamp(Tenant(), batch="b2")
        theirs = taskapi.app.AsyncResult(ours.apply_async().id).get(timeout=30)
        assert theirs["stamps"] == {"tenant": "acme", "batch": "b2"}
        assert theirs["stamped_headers"] == ["batch", "tenant"] and theirs["tenant"] == "acme"
    finally:
        release_celery_results(client)
        client.close()


def test_a_task_with_send_events_false_sends_no_task_events(taskapi: Any, start_worker: Any, broker_url: str) -> None:
    from tests.integration.test_ops_events import Tail

    start_worker("-P", "threads", "-c", "1", app=APP)
    tail = Tail(broker_url)
    try:
        quiet = taskapi.silent.delay()
        assert quiet.get(timeout=30) == "quiet"
        loud = taskapi.add.delay(1, 1)  # sentinel: its events come after any the quiet task would have sent
        assert loud.get(timeout=30) == 2
        wait_for(
            lambda: any(e.get("uuid") == loud.id and e["type"] == "task-succeeded" for e in tail.seen()),
            30,
            "the sentinel's task-succeeded event",
        )
        worker_events = {e["type"] for e in tail.seen() if e.get("uuid") == quiet.id} - {"task-sent"}
        assert worker_events == set()
        assert {"task-received", "task-started", "task-succeeded"} <= {
            e["type"] for e in tail.seen() if e.get("uuid") == loud.id
        }
    finally:
        tail.close()
