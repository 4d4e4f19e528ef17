"""Celery 5.7 parity seen through real worker processes. The tasks live in this module (the worker
imports it with ``-A``): the app has no broker of its own, the worker gets the test's server from
``TQCTL_BROKER`` and the client side is pointed at it by ``client_app``."""

from __future__ import annotations

import io
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from engine import App, group
from engine import exceptions as ours_exc
from engine.result import allow_join_result
from tests.integration.conftest import client_app
from tests.integration.harness import ChildProcess, WorkerProcess, wait_for
from tests.integration.test_ops_events import Tail

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


def sleep_through(seconds: float) -> str:
    """Short sleeps: the thread pool's limit (an asynchronous exception) lands between two."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.02)
    return "not interrupted"


def catch_soft(seconds: float) -> Any:
    """What a task that catches its soft limit sees of it (ours, or Celery's from billiard)."""
    try:
        return sleep_through(seconds)
    except Exception as exc:
        if type(exc).__name__ != "SoftTimeLimitExceeded":
            raise
        return [str(exc), repr(exc), list(exc.args)]


def die() -> None:
    """Kills the process running it: a prefork worker stores ``WorkerLostError`` for the task."""
    os.kill(os.getpid(), signal.SIGKILL)


app.task(name="parity.sleep_through")(sleep_through)
app.task(name="parity.catch_soft")(catch_soft)
app.task(name="parity.die")(die)


def __getattr__(name: str) -> Any:
    """``celery_twin``: the same task functions on a real Celery 5.7 app, made only when a Celery
    worker asks for it (``-A tests.integration.test_parity_celery57:celery_twin``): our workers
    import this module too, and never import Celery."""
    if name != "celery_twin":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import celery

    twin = celery.Celery("parity_twin", broker=os.environ.get("PARITY_BROKER"), set_as_current=False)
    twin.conf.update(result_backend=os.environ.get("PARITY_BROKER"), broker_connection_retry_on_startup=True)
    twin.task(name="parity.sleep_through")(sleep_through)
    twin.task(name="parity.catch_soft")(catch_soft)
    twin.task(name="parity.die")(die)
    globals()["celery_twin"] = twin
    return twin


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


# -- time limits --------------------------------------------------------------------------------


class CeleryTwin(ChildProcess):
    """A real Celery 5.7 prefork worker (the pool that enforces time limits) on ``celery_twin``."""

    ready_marker = " ready."

    def __init__(self, url: str, log_path: Path) -> None:
        env = {**os.environ, "PARITY_BROKER": url, "PYTHONPATH": str(Path(__file__).parents[2])}
        argv = [sys.executable, "-m", "celery", "-A", f"{APP}:celery_twin", "worker", "-P", "prefork", "-c", "1"]
        argv += ["-E", "-Q", "theirs", "--without-mingle", "--without-gossip", "-l", "info", "-n", "twin@%h"]
        super().__init__(argv, log_path, env)


@pytest.fixture
def tail(broker_url: str) -> Iterator[Tail]:
    follower = Tail(broker_url)
    yield follower
    follower.close()


LIMIT_LINE = re.compile(r"(?:Soft|Hard) time limit \([^)]*\) exceeded for [\w.]+\[[\w-]+\]")


def limit_runs(client: Any, queue: str) -> dict[str, Any]:
    """A soft limit not caught, one caught, a hard limit (0.5 s each), run to their ends."""
    runs = {
        "soft": client.send_task("parity.sleep_through", (30,), soft_time_limit=0.5, queue=queue),
        "caught": client.send_task("parity.catch_soft", (30,), soft_time_limit=0.5, queue=queue),
        "hard": client.send_task("parity.sleep_through", (30,), time_limit=0.5, queue=queue),
    }
    for result in runs.values():
        result.get(timeout=60, propagate=False)
    return runs


def what_a_user_sees(runs: dict[str, Any], log: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Per run: its state and result as a Celery client reads them, the stored traceback's last
    line less the class's module, the task-failed events' exception field; and the worker's limit
    lines, task ids named by run."""
    seen: dict[str, Any] = {}
    for kind, result in runs.items():
        value = result.result
        last = (result.traceback or "").strip().splitlines()[-1:]
        seen[kind] = {
            "state": result.state,
            "type": type(value).__name__,
            "str": str(value),
            "args": value.args if isinstance(value, BaseException) else None,
            "traceback": [line.split(": ", 1)[-1] for line in last],
            "events": [e.get("exception") for e in events if e["type"] == "task-failed" and e["uuid"] == result.id],
        }
        log = log.replace(result.id, kind)
    seen["log"] = LIMIT_LINE.findall(log)
    return seen


def run(state: str, type_: str, text: str, args: Any, traceback: list[str]) -> dict[str, Any]:
    return {"state": state, "type": type_, "str": text, "args": args, "traceback": traceback}


# What a Celery 5.7 prefork worker gives, as test_time_limit_errors_read_as_a_celery_workers sees.
CELERYS: dict[str, Any] = {
    "soft": run("FAILURE", "SoftTimeLimitExceeded", "SoftTimeLimitExceeded()", (), ["SoftTimeLimitExceeded()"]),
    "caught": run("SUCCESS", "list", str(["SoftTimeLimitExceeded()"] * 2 + [[]]), None, []),
    "hard": run("FAILURE", "TimeLimitExceeded", "TimeLimitExceeded(0.5,)", (0.5,), []),  # no traceback
    "log": [
        "Soft time limit (0.5s) exceeded for parity.sleep_through[soft]",
        "Soft time limit (0.5s) exceeded for parity.catch_soft[caught]",
        "Hard time limit (0.5s) exceeded for parity.sleep_through[hard]",
    ],
}


def without_events(seen: dict[str, Any]) -> dict[str, Any]:
    return {
        kind: {k: v for k, v in got.items() if k != "events"} if kind != "log" else got for kind, got in seen.items()
    }


def as_read(value: Any) -> tuple[str, str, str, Any]:
    return type(value).__name__, str(value), repr(value), getattr(value, "args", None)


def test_time_limit_errors_read_as_a_celery_workers(
    broker_url: str,
    tail: Tail,
    celery_app: Any,
    parity: Any,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    """Before: ours read ``SoftTimeLimitExceeded('time limit (0.5s) exceeded')`` and
    ``TimeLimitExceeded('hard time limit (0.5s) exceeded')`` in the result, its traceback, the
    event and the log, and logged no "Soft/Hard time limit (0.5s) exceeded for name[id]" line. Now
    word for word a Celery prefork worker's, read by the same Celery client. Except: Celery's
    hard-limit task-failed events (two of them) read ``ExceptionWithTraceback()``, billiard's
    wrapper; ours (one) names the error.

    Also both clients read the other's stored errors. Before, our client read Celery's (stored
    under ``billiard.exceptions``) as billiard's class or a stand-in whose ``str()`` was ``0.5``:
    ``except engine.exceptions.TimeLimitExceeded`` missed them. Now as our classes."""
    twin = CeleryTwin(broker_url, tmp_path / "celery.log")
    try:
        twin.wait_ready(60)
        ours = start_worker("-P", "prefork", "-c", "1", app=APP)
        runs = {"celery": limit_runs(celery_app, "theirs"), "ours": limit_runs(celery_app, "celery")}
        ids = {r.id for side in runs.values() for r in side.values() if r.state == "FAILURE"}
        wait_for(lambda: ids <= {e["uuid"] for e in tail.seen() if e["type"] == "task-failed"}, 30, "the events")
        lost = celery_app.send_task("parity.die", queue="theirs")
        lost.get(timeout=60, propagate=False)
        celery_log = twin.log()
    finally:
        twin.close()
    seen = {
        "celery": what_a_user_sees(runs["celery"], celery_log, tail.seen()),
        "ours": what_a_user_sees(runs["ours"], ours.log(), tail.seen()),
    }
    assert seen["celery"]["soft"]["events"] == seen["ours"]["soft"]["events"] == ["SoftTimeLimitExceeded()"]
    assert seen["celery"]["hard"]["events"] == ["ExceptionWithTraceback()"] * 2
    assert seen["ours"]["hard"]["events"] == ["TimeLimitExceeded(0.5)"]
    assert without_events(seen["ours"]) == without_events(seen["celery"]) == CELERYS
    import celery.exceptions

    assert type(runs["ours"]["hard"].result) is celery.exceptions.TimeLimitExceeded  # Celery reads ours as its own
    assert type(runs["ours"]["soft"].result) is celery.exceptions.SoftTimeLimitExceeded
    # Our client reads Celery's (stored under billiard.exceptions) as our classes, shown as Celery shows them.
    for name, result in {**runs["celery"], "lost": lost}.items():
        if result.state == "FAILURE":
            by_us = parity.app.AsyncResult(result.id).result
            assert isinstance(by_us, ours_exc.CELERY_EXCEPTIONS[type(result.result).__name__]), name
            assert as_read(by_us) == as_read(result.result), name
    assert type(lost.result) is celery.exceptions.WorkerLostError
    assert str(lost.result).startswith("Worker exited prematurely: signal 9 (SIGKILL)")


@pytest.mark.parametrize("pool", ["solo", "threads", "gevent", "asyncio"])
def test_time_limit_errors_read_as_celerys_in_every_pool(
    parity: Any, celery_app: Any, start_worker: Callable[..., WorkerProcess], pool: str
) -> None:
    """Before: solo, gevent and asyncio read ``time limit (0.5s) exceeded``; threads (and the
    asyncio pool's plain ``def`` tasks) raised ``TimeLimitExceeded()`` without the limit, and
    logged no "Soft/Hard time limit (0.5s) exceeded for name[id]" line. Now each reads and logs as
    Celery's prefork worker does (Celery's pools of these names enforce no limits). Here the hard
    limit is raised in the task, so it has a traceback. The two soft limits fall together on two
    threads or greenlets, so their lines are compared in either order."""
    worker = start_worker("-P", pool, "-c", "2", app=APP)
    runs = limit_runs(celery_app, "celery")
    seen = without_events(what_a_user_sees(runs, worker.log(), []))
    assert sorted(seen.pop("log")) == sorted(CELERYS["log"])
    assert seen == {
        **{kind: got for kind, got in CELERYS.items() if kind != "log"},
        "hard": {**CELERYS["hard"], "traceback": ["TimeLimitExceeded(0.5,)"]},
    }
    ours = parity.app.AsyncResult(runs["hard"].id).result  # our client reads the same
    assert (type(ours).__module__, str(ours), ours.args) == ("engine.exceptions", "TimeLimitExceeded(0.5,)", (0.5,))


# -- a pool child killed mid-task -----------------------------------------------------------------

LOST_LINE = re.compile(r"Process '[\w-]+' pid:\d+ exited with '([^']*)'")


def lost_as_seen(result: Any, log: str) -> dict[str, Any]:
    """What a Celery client reads of a task whose process died, and the worker's line for the
    process; billiard's job number (Celery's count of its pool's jobs) as N."""
    return {
        "state": result.state,
        "type": type(result.result).__name__,
        "str": re.sub(r"Job: \d+\.$", "Job: N.", str(result.result)),
        "line": LOST_LINE.findall(log),
    }


def test_a_killed_pool_child_reads_as_a_celery_workers(
    broker_url: str, celery_app: Any, parity: Any, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """Before: ours stored ``WorkerLostError('child process 1234 exited with signal SIGKILL')`` and
    logged no line for the process. Now Celery 5.7 prefork's text, ``Worker exited prematurely:
    signal 9 (SIGKILL) Job: N.``, and its "Process '...' pid:N exited with 'signal 9 (SIGKILL)'"
    line (the process named by its own pool). Our client reads both as our WorkerLostError."""
    twin = CeleryTwin(broker_url, tmp_path / "celery.log")
    try:
        twin.wait_ready(60)
        theirs = celery_app.send_task("parity.die", queue="theirs")
        theirs.get(timeout=60, propagate=False)
        celery_log = twin.log()
    finally:
        twin.close()
    worker = start_worker("-P", "prefork", "-c", "2", app=APP)
    ours = celery_app.send_task("parity.die", queue="celery")
    ours.get(timeout=60, propagate=False)
    wait_for(lambda: LOST_LINE.search(worker.log()), 30, "the worker's line")
    expected = {
        "state": "FAILURE",
        "type": "WorkerLostError",
        "str": "Worker exited prematurely: signal 9 (SIGKILL) Job: N.",
        "line": ["signal 9 (SIGKILL)"],
    }
    assert lost_as_seen(theirs, celery_log) == lost_as_seen(ours, worker.log()) == expected
    for result in (theirs, ours):
        by_us = parity.app.AsyncResult(result.id).result
        assert isinstance(by_us, ours_exc.WorkerLostError) and str(by_us) == str(result.result)
