"""Celery 5.7 parity seen through real worker processes. The tasks live in this module (the worker
imports it with ``-A``): the app has no broker of its own, the worker gets the test's server from
``TQCTL_BROKER`` and the client side is pointed at it by ``client_app``."""

from __future__ import annotations

import io
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from engine import App, group
from engine.result import allow_join_result
from tests.integration.conftest import client_app

pytestmark = pytest.mark.integration
APP = __name__

app = App("parity")


@app.task(name="parity.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="parity.wait_for_child")
def wait_for_child(how: str) -> Any:
    """``get()`` on a task it sent: refused unless the caller opted out, as Celery's worker does."""
    child = add.delay(1, 1)
    try:
        if how == "allowed":
            with allow_join_result():
                return child.get(timeout=30)
        return child.get(timeout=30, disable_sync_subtasks=(how != "opted_out"))
    except RuntimeError as exc:
        return f"refused: {exc}"


@app.task(name="parity.spawn")
def spawn() -> str:
    add.delay(1, 1)
    add.delay(2, 2)
    return "spawned"


@pytest.fixture
def parity(broker_url: str) -> Iterator[ModuleType]:
    yield from client_app(APP, broker_url)


def test_get_inside_a_worker_task_is_refused_unless_allowed_as_celerys(parity: Any, start_worker: Any) -> None:
    start_worker("-P", "prefork", "-c", "2", app=APP)
    refused = parity.wait_for_child.delay("plain").get(timeout=30)
    assert refused.startswith("refused: Never call result.get() within a task")
    assert "disable_sync_subtasks=False" in refused
    assert parity.wait_for_child.delay("opted_out").get(timeout=30) == 2
    assert parity.wait_for_child.delay("allowed").get(timeout=30) == 2


def test_get_inside_a_gevent_worker_task_is_allowed_as_celerys(parity: Any, start_worker: Any) -> None:
    """Celery's gevent pool does not refuse the wait (it only parks the greenlet); nor does ours."""
    start_worker("-P", "gevent", "-c", "4", app=APP)
    assert parity.wait_for_child.delay("plain").get(timeout=30) == 2


def test_then_calls_back_with_the_result_once_it_is_read_ready_as_celerys(parity: Any, start_worker: Any) -> None:
    """What Celery 5.7 does on Redis: the callback runs when this process reads the result ready
    (``get()``), at once for one already read, with the result; a set's with the set."""
    start_worker("-P", "prefork", "-c", "2", app=APP)
    seen: list[tuple[str, Any]] = []
    one = parity.add.delay(1, 2)
    chained = one.then(lambda res: seen.append(("one", res.result)) or "chained")
    assert one.get(timeout=30) == 3
    assert seen == [("one", 3)] and chained.value == (("chained",), {})
    one.then(lambda res: seen.append(("late", res.id)))
    assert seen[-1] == ("late", one.id)
    both = group(parity.add.s(1, 1), parity.add.s(2, 2)).delay()
    both.then(lambda res: seen.append(("group", res.id)))
    assert both.get(timeout=30) == [2, 4] and seen[-1] == ("group", both.id)
    failing = parity.add.delay(3, 3)
    failing.then(lambda res: 1 / 0, on_error=lambda exc: seen.append(("error", type(exc).__name__)))
    failing.get(timeout=30)
    assert seen[-1] == ("error", "ZeroDivisionError")


def test_build_graph_has_the_result_and_what_it_started(parity: Any, start_worker: Any) -> None:
    start_worker("-P", "prefork", "-c", "2", app=APP)
    started = parity.spawn.delay()
    assert started.get(timeout=30) == "spawned"
    children = started.children
    for child in children:
        child.get(timeout=30)
    graph = started.build_graph()
    assert list(graph) == [started, *children] and graph[started] == children
    assert graph.topsort()[-1] == started  # what it started comes first
    dot = io.StringIO()
    graph.to_dot(dot)
    assert dot.getvalue().startswith("digraph dependencies {")
    assert all(f'"{started.id}" -> "{child.id}"' in dot.getvalue() for child in children)
