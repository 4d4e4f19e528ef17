"""Our client for the suite's conftest: the fixtures and ``Manager`` it imports from
``celery.contrib.pytest`` / ``celery.contrib.testing.manager``, built on ``engine.App``.

Where the conftest touches Celery app internals that have no meaning here (``set_current``,
``amqp.queues``), ``SuiteApp`` answers them; README lists these as test-harness stand-ins.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from engine import App
from engine import states as st
from tests.celery_suite.external import celery_session_worker  # noqa: F401 - a fixture

_DEFAULTS = {"task_allow_error_cb_on_chord_header": False, "task_protocol": 2, "result_backend_transport_options": {}}


class SuiteApp(App):
    """``engine.App`` plus the few Celery app attributes the suite's conftest reads."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        if not hasattr(App, "amqp"):
            self.amqp = SimpleNamespace(queues={"celery": None})

    def set_current(self) -> None:
        parent = getattr(super(), "set_current", None)
        if parent is not None:
            parent()

    def set_default(self) -> None:
        parent = getattr(super(), "set_default", None)
        if parent is not None:
            parent()


@pytest.fixture(scope="session")
def celery_session_app(celery_config: dict[str, Any], celery_includes: Sequence[str]) -> Iterator[App]:
    import importlib

    settings = {**_DEFAULTS, **{k: v for k, v in celery_config.items() if not k.startswith("cassandra")}}
    app = SuiteApp("celery.tests", **settings)
    for module in celery_includes:
        importlib.import_module(module)
    yield app
    app.close()


@pytest.fixture
def celery_app(request: pytest.FixtureRequest, celery_session_app: App, celery_config: dict[str, Any]) -> Iterator[App]:
    """As Celery's: a test marked ``@pytest.mark.celery(setting=...)`` gets an app of its own with
    those settings on top of the suite's; the others share the session's app."""
    mark = request.node.get_closest_marker("celery")
    if mark is None:
        yield celery_session_app
        return
    settings = {**_DEFAULTS, **{k: v for k, v in celery_config.items() if not k.startswith("cassandra")}}
    app = SuiteApp("celery.tests", **{**settings, **mark.kwargs})
    yield app
    app.close()


class _Sentinel(Exception):
    pass


class Manager:
    """The parts of Celery's ``contrib.testing.manager.Manager`` the suite calls."""

    def __init__(self, app: App) -> None:
        self.app = app

    def wait_for(
        self,
        fun: Callable[..., Any],
        catch: Sequence[type[BaseException]],
        desc: str = "thing",
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        max_retries: int = 10,
        interval_start: float = 0.1,
        interval_step: float = 0.5,
        interval_max: float = 5.0,
        **_: Any,
    ) -> Any:
        interval = interval_start
        for attempt in range(max_retries + 1):
            try:
                return fun(*args, **(kwargs or {}))
            except tuple(catch):
                if attempt == max_retries:
                    raise
                time.sleep(interval)
                interval = min(interval + interval_step, interval_max)
        return None  # pragma: no cover

    def inspect(self, timeout: float = 3.0) -> Any:
        return self.app.control.inspect(timeout=timeout)

    def _states(self, ids: Sequence[str]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        replies = self.app.control.inspect("query_task", timeout=0.5, ids=list(ids))
        for reply in replies.values():
            for task_id, (state, _) in (reply or {}).items():
                found.setdefault(state, set()).add(task_id)
        return found

    def _true_or_raise(self, fun: Callable[[], bool]) -> bool:
        if not fun():
            raise _Sentinel()
        return True

    def assert_accepted(self, ids: Sequence[str], interval: float = 0.5, **policy: Any) -> bool:
        def accepted() -> bool:
            found = self._states(ids)
            return all(any(t in found.get(k, ()) for k in ("active", "ready")) for t in ids)

        policy.pop("desc", None)
        return self.wait_for(lambda: self._true_or_raise(accepted), (_Sentinel,), **policy)

    def assert_result_tasks_in_progress_or_completed(
        self, results: Sequence[Any], interval: float = 0.5, **policy: Any
    ) -> bool:
        policy.pop("desc", None)
        ok = (st.STARTED, st.SUCCESS)
        return self.wait_for(
            lambda: self._true_or_raise(lambda: all(r.state in ok for r in results)), (_Sentinel,), **policy
        )

    def join(self, r: Any, propagate: bool = False, max_retries: int = 10, **kwargs: Any) -> Any:
        return r.get(propagate=propagate, **kwargs)

    def wait_until_idle(self) -> None:
        """As Celery's: empty the task queue first (a test's leftovers must not run into the next
        one), then wait until the worker runs nothing."""
        queue = self.app.conf.task_default_queue or "celery"
        while self.app.broker.purge(queue):
            pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            active = self.app.control.inspect("active", timeout=1.0)
            if not any(active.values()):
                return
            time.sleep(0.2)
