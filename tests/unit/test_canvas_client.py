"""What our client builds from a canvas, checked against Celery 5.7's rules without a worker.

Found by Celery's own integration suite (modes b and c of ``tests/celery_suite``): a group's
callback goes on its first member only, its errback on every member; a chain nested in a chain
keeps its callbacks; group and chord applied in place (eager) run their members here; the
result backend answers to Celery's key/value names.
"""

from __future__ import annotations

from typing import Any

import pytest

from engine import App, chain, chord, group
from engine.backend.base import BaseKeyValueStoreBackend
from engine.exceptions import TimeoutError
from engine.result import AsyncResult, ResultSet

NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens there: these tests never connect


def make_app(**conf: Any) -> tuple[App, dict[str, Any]]:
    app = App("unit-canvas-client", broker=NOWHERE, backend=NOWHERE, **conf)
    funs = {"add": lambda x, y: x + y, "identity": lambda x: x, "tsum": sum}
    return app, {name: app.task(name=f"cc.{name}")(fun) for name, fun in funs.items()}


def test_group_link_goes_on_the_first_member_only_and_immutable() -> None:
    _, t = make_app()
    flow = group(t["add"].si(1, 1), t["add"].si(2, 2))
    flow.link(t["identity"].s())
    first, second = flow.tasks
    assert [cb["task"] for cb in first.options["link"]] == ["cc.identity"]
    assert first.options["link"][0]["immutable"] is True
    assert "link" not in second.options and "link" not in flow.options


def test_group_link_error_goes_on_every_member() -> None:
    _, t = make_app()
    flow = group(t["add"].si(1, 1), t["add"].si(2, 2))
    flow.link_error(t["identity"].s())
    assert [[eb["task"] for eb in m.options["link_error"]] for m in flow.tasks] == [["cc.identity"]] * 2
    assert "link_error" not in flow.options


def test_a_chain_nested_in_a_chain_keeps_its_callbacks() -> None:
    _, t = make_app()
    inner = chain(t["identity"].s("a"), t["add"].s("b"))
    inner.link(t["identity"].si("linked"))
    inner.link_error(t["identity"].si("failed"))
    steps = chain(inner, t["add"].s("c"))._steps()
    assert [s.name for s in steps] == ["cc.identity", "cc.add", "cc.add"]
    assert [cb["args"] for cb in steps[1].options["link"]] == [["linked"]]
    assert all(s.options["link_error"][0]["args"] == ["failed"] for s in steps[:2])
    assert "link" not in steps[2].options


def test_chord_and_group_apply_run_here_with_call_time_args() -> None:
    _, t = make_app()
    flow = chain(chord([t["identity"].s(), t["identity"].s()], t["identity"].s()), t["identity"].s())
    assert flow.apply(args=(1,)).get() == [1, 1]
    nested = chain(chain(t["identity"].s(), t["identity"].s()))
    assert nested.apply(args=(1,)).get() == 1
    assert group(t["add"].s(1), t["add"].s(2)).apply((10,)).get() == [11, 12]
    assert chord([t["add"].si(1, 1), t["add"].si(2, 2)], t["tsum"].s()).apply().get() == 6


def test_a_generator_header_is_not_read_before_the_chord_is_sent() -> None:
    _, t = make_app()
    read: list[int] = []

    def header() -> Any:
        for i in range(3):
            read.append(i)
            yield t["add"].si(i, i)

    c = chord(header(), t["tsum"].s())
    assert read == []  # built, not read: sending reads it one member at a time
    assert [m["args"] for m in c.header] == [(0, 0), (1, 1), (2, 2)] and read == [0, 1, 2]


def test_result_set_and_key_value_backend_names() -> None:
    app, _ = make_app()
    backend = app.backend
    assert isinstance(backend, BaseKeyValueStoreBackend)
    assert backend.get_key_for_group("g1", ".j") == "celery-taskset-meta-g1.j"
    assert backend.get_key_for_task("t1") == "celery-task-meta-t1"
    assert backend.decode(backend.encode([1, "t", "SUCCESS", 3])) == [1, "t", "SUCCESS", 3]
    rs = ResultSet([AsyncResult("a", app)])
    rs.add(AsyncResult("b", app))
    rs.add(AsyncResult("a", app))
    assert [r.id for r in rs] == ["a", "b"] and len(rs) == 2
    rs.discard("a")
    assert [r.id for r in rs.results] == ["b"]


def test_get_many_with_timeout_zero_polls_once() -> None:
    class Store(BaseKeyValueStoreBackend):
        polls = 0

        def mget(self, keys: Any) -> list[bytes | None]:
            Store.polls += 1
            return [b'{"status": "SUCCESS", "result": 1}' if k.endswith("done") else None for k in keys]

    with pytest.raises(TimeoutError):
        dict(Store().get_many(["done", "never"], timeout=0, interval=30))
    assert Store.polls == 1
    assert dict(Store().get_many(["done"], timeout=0)) == {"done": {"status": "SUCCESS", "result": 1}}


def test_a_group_of_one_in_a_chain_is_that_task() -> None:
    _, t = make_app()
    steps = chain(group(t["add"].s(0, 0)), t["add"].s(-1))._steps()
    assert [(s.name, s["subtask_type"]) for s in steps] == [("cc.add", None), ("cc.add", None)]
