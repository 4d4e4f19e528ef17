"""User Guide, Testing: with ``task_always_eager`` every canvas runs in the calling process, as
Celery's does, so a project's unit tests need no broker. Each case runs the same canvas on a
Celery 5.7 app and on ours (both with a broker that is not there) and compares what the caller sees.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import celery
import pytest

from engine import App

NOWHERE = "redis://127.0.0.1:1/0"
_APPS = itertools.count()  # each Celery app its own name: Celery warns about a task name registered twice


def _tasks(app: Any) -> dict[str, Any]:
    @app.task(name="ug.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="ug.tsum")
    def tsum(values: list[int]) -> int:
        return sum(values)

    @app.task(name="ug.fail")
    def fail(*args: Any) -> None:
        raise ValueError("failed eagerly")

    return {"add": add, "tsum": tsum, "fail": fail}


@pytest.fixture
def both() -> Iterator[list[tuple[Any, dict[str, Any]]]]:
    ours = App("ug_eager", broker=NOWHERE, backend=NOWHERE, task_always_eager=True)
    name = f"ug_eager{next(_APPS)}"
    theirs = celery.Celery(name, broker="memory://", backend="cache+memory://", set_as_current=False)
    theirs.conf.task_always_eager = True
    yield [(theirs, _tasks(theirs)), (ours, _tasks(ours))]
    ours.close()
    theirs.close()


def _same(both: list[tuple[Any, dict[str, Any]]], run: Callable[[Any, dict[str, Any]], Any]) -> Any:
    """What ``run`` gives on Celery's app and on ours, asserted equal; ours returned."""
    (theirs, their_tasks), (ours, our_tasks) = both
    mod = __import__("engine.workflows", fromlist=["chain"])
    expected = run(celery, their_tasks)
    got = run(mod, our_tasks)
    assert got == expected
    return got


def test_chain_runs_inline_and_keeps_its_parents(both: Any) -> None:
    def run(canvas: Any, t: dict[str, Any]) -> Any:
        result = canvas.chain(t["add"].s(1, 1), t["add"].s(2), t["add"].s(3)).delay()
        return [type(result).__name__, result.get(), result.parent.get(), result.parent.parent.get()]

    assert _same(both, run) == ["EagerResult", 7, 4, 2]


def test_chain_of_a_failing_step_raises_at_the_call(both: Any) -> None:
    def run(canvas: Any, t: dict[str, Any]) -> Any:
        with pytest.raises(ValueError, match="failed eagerly"):
            canvas.chain(t["add"].s(1, 1), t["fail"].s(), t["add"].s(3)).apply_async()
        return "raised"

    _same(both, run)


def test_group_and_chord_run_inline(both: Any) -> None:
    def run(canvas: Any, t: dict[str, Any]) -> Any:
        grouped = canvas.group(t["add"].s(i, i) for i in range(3)).delay()
        chorded = canvas.chord([t["add"].s(1, 1), t["add"].s(2, 2)], t["tsum"].s()).delay()
        piped = (t["add"].s(1, 2) | t["add"].s(3)).delay()
        return [
            type(grouped).__name__,
            [type(r).__name__ for r in grouped.results],
            grouped.get(),
            type(chorded).__name__,
            chorded.get(),
            piped.get(),
        ]

    assert _same(both, run) == ["GroupResult", ["EagerResult"] * 3, [0, 2, 4], "EagerResult", 6, 6]


def test_chunks_map_and_starmap_run_inline(both: Any) -> None:
    def run(canvas: Any, t: dict[str, Any]) -> Any:
        return [
            t["add"].chunks([(1, 1), (2, 2), (3, 3)], 2).delay().get(),
            t["tsum"].map([[1, 2], [3, 4]]).delay().get(),
            t["add"].starmap([(1, 2), (3, 4)]).delay().get(),
        ]

    assert _same(both, run) == [[[2, 4], [6]], [3, 7], [3, 7]]


def test_eager_chord_with_a_failing_member_propagates(both: Any) -> None:
    def run(canvas: Any, t: dict[str, Any]) -> Any:
        with pytest.raises(ValueError, match="failed eagerly"):
            canvas.chord([t["add"].s(1, 1), t["fail"].s()], t["tsum"].s()).delay()
        return "raised"

    _same(both, run)


def test_an_eager_request_reads_as_celerys(both: Any) -> None:
    def run(canvas: Any, t: dict[str, Any]) -> Any:
        app = t["add"].app

        @app.task(name="ug.request", bind=True)
        def request(self: Any) -> Any:
            r = self.request
            return [r.is_eager, r.ignore_result, r.called_directly, sorted(r.delivery_info.items())]

        return request.apply(priority=3).get()

    assert _same(both, run) == [
        True,
        False,
        False,
        [("exchange", None), ("is_eager", True), ("priority", 3), ("routing_key", None)],
    ]


def test_the_max_retries_message_reads_as_celerys(both: Any) -> None:
    def run(canvas: Any, t: dict[str, Any]) -> Any:
        app = t["add"].app

        @app.task(name="ug.no_more", bind=True)
        def no_more(self: Any, *args: Any, **kwargs: Any) -> None:
            raise self.retry(countdown=0, max_retries=0)

        result = no_more.apply((1, "two"), {"k": 3}, task_id="fixed-id")
        return [result.state, type(result.result).__name__, str(result.result)]

    assert _same(both, run) == [
        "FAILURE",
        "MaxRetriesExceededError",
        "Can't retry ug.no_more[fixed-id] args:(1, 'two') kwargs:{'k': 3}",
    ]
