"""A Celery 5.7 client feeding our worker gets what a Celery 5.7 worker gives it (issue 12, mode a).

Each test runs twice on one fresh server: against our worker (``-P prefork``) and against a real
Celery worker running the very same task functions (tests/apps/compat_worker.py and
tests/apps/celery_compat_worker.py). The assertions are the behaviour Celery's own integration suite
checks in ``t/integration/test_tasks.py``: retries that switch between positional and keyword
arguments, a retry keeping the message's priority, ``replaced_task_nesting`` across replacements,
revokes marked in the result backend at once (but never over a task another worker started),
tasks that expire while they wait behind others, and ``revoke_by_stamped_headers``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.harness import CeleryWorkerProcess, WorkerProcess, wait_for

pytestmark = pytest.mark.integration

TIMEOUT = 30


@pytest.fixture(params=["ours", "celery"])
def worker(
    request: pytest.FixtureRequest,
    broker_url: str,
    start_worker: Callable[..., WorkerProcess],
    celery_processes: Callable[..., CeleryWorkerProcess],
) -> str:
    """One worker of the given kind, concurrency 1, on the test's server."""
    if request.param == "ours":
        start_worker("-P", "prefork", "-c", "1", name="ours1", app="tests.apps.compat_worker")
    else:
        env = {"INTEROP_BROKER": broker_url, "INTEROP_BACKEND": broker_url}
        celery_processes("tests.apps.celery_compat_worker", "celery", "celery1", env)
    return str(request.param)


def test_retry_arguments_priority_and_replacement_nesting(worker: str, celery_app: Any) -> None:
    switched_to_args = celery_app.send_task("compat.retry_with_args", kwargs={"foo": 1, "bar": 2, "label": "kept"})
    switched_to_kwargs = celery_app.send_task("compat.retry_with_kwargs", args=(1, 2))
    prioritised = celery_app.send_task("compat.retry_priority", priority=7)
    replaced = celery_app.send_task("compat.nesting", args=(3,))

    assert switched_to_args.get(timeout=TIMEOUT) == {"foo": 2, "bar": 3, "label": "kept", "retries": 1}
    assert switched_to_kwargs.get(timeout=TIMEOUT) == {"foo": 2, "bar": 2, "retries": 1}
    assert prioritised.get(timeout=TIMEOUT) == 7
    assert replaced.get(timeout=TIMEOUT) == [0, 1, 2, 3]


def test_revocation_by_id_by_stamp_and_by_expiry(worker: str, celery_app: Any) -> None:
    from celery.canvas import StampingVisitor
    from celery.exceptions import TaskRevokedError

    # A revoke marks a task that has not started REVOKED at once; one another worker started
    # (a custom state here) keeps its state.
    backend = celery_app.backend
    elsewhere, waiting = str(uuid.uuid4()), str(uuid.uuid4())
    backend.store_result(elsewhere, {"hostname": "other@host"}, "PROGRESS")
    assert celery_app.control.revoke([elsewhere, waiting], reply=True, timeout=10)
    assert backend.get_state(elsewhere) == "PROGRESS"
    assert backend.get_state(waiting) == "REVOKED"
    # ``AsyncResult.revoke()`` broadcasts with no expiry (kombu's ``expires: 0``) and asks no reply.
    quiet = celery_app.AsyncResult(str(uuid.uuid4()))
    quiet.revoke()
    wait_for(lambda: backend.get_state(quiet.id) == "REVOKED", TIMEOUT, "the revoke without reply to be handled")

    # Revoked by stamp: the reply is Celery's, the stamped task is revoked, another stamp runs.
    replies = celery_app.control.revoke_by_stamped_headers({"mon": ["v1"]}, terminate=False, reply=True, timeout=10)
    assert [next(iter(r.values())) for r in replies] == [
        {"ok": "headers {'mon': ['v1']} flagged as revoked, but not terminated"}
    ]

    class Mon(StampingVisitor):  # type: ignore[misc]
        def __init__(self, value: str) -> None:
            self.value = value

        def on_signature(self, sig: Any, **headers: Any) -> dict[str, Any]:
            return {"mon": self.value}

    hit, miss = celery_app.signature("compat.add", args=(1, 1)), celery_app.signature("compat.add", args=(2, 2))
    hit.stamp(visitor=Mon("v1"))
    miss.stamp(visitor=Mon("v2"))
    hit_result, miss_result = hit.apply_async(), miss.apply_async()
    assert miss_result.get(timeout=TIMEOUT) == 4
    with pytest.raises(TaskRevokedError):
        hit_result.get(timeout=TIMEOUT)

    # Expired while waiting behind a longer task (already reserved by the worker): revoked, not run.
    blocker = celery_app.send_task("compat.sleep", args=(2,))
    expiring = celery_app.send_task("compat.add", args=(1, 1), expires=1)
    with pytest.raises(TaskRevokedError):
        expiring.get(timeout=TIMEOUT)
    assert expiring.state == "REVOKED"
    assert blocker.get(timeout=TIMEOUT) == 2
