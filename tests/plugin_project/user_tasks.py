"""A user's test module: the tqctl pytest plugin's fixtures and ``start_worker`` on their own app.

Run by tests/integration/test_testing_plugin.py in a separate pytest process, as a user's suite
runs (the plugin loads through its ``pytest11`` entry point; no import of it here).
"""

from __future__ import annotations

import pytest

from engine import App
from engine.testing import start_worker

users_app = App("users_app")  # a project's own app, defined at import as projects do


@users_app.task(name="users.mul")
def mul(x: int, y: int) -> int:
    return x * y


def test_worker_runs_a_task_defined_in_the_test(tqctl_app, tqctl_worker) -> None:
    @tqctl_app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    assert add.delay(2, 3).get(timeout=10) == 5
    assert tqctl_app.conf.task_default_queue == "plugin-tests"  # from tqctl_config
    assert tqctl_worker.concurrency == 2  # from tqctl_worker_parameters
    assert tqctl_worker.queues == ["plugin-tests"]


def test_failures_reach_the_caller(tqctl_app, tqctl_worker) -> None:
    @tqctl_app.task(name="t.boom")
    def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        boom.delay().get(timeout=10)


def test_session_worker_serves_many_tests(tqctl_session_app, tqctl_session_worker) -> None:
    @tqctl_session_app.task(name="s.echo")
    def echo(value: str) -> str:
        return value

    assert [echo.delay(v).get(timeout=10) for v in "ab"] == ["a", "b"]


def test_start_worker_on_the_projects_own_app(tqctl_broker_url: str) -> None:
    users_app.conf.broker_url = tqctl_broker_url
    users_app.conf.result_backend = tqctl_broker_url
    with start_worker(users_app, queues=["users"]) as worker:
        assert worker.queues == ["users"]
        assert mul.apply_async((3, 4), queue="users").get(timeout=10) == 12
    users_app.close()
