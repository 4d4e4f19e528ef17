"""Child recycling (``--max-tasks-per-child``, ``--max-memory-per-child``) on real workers: the
work-sharing pool on Redis, the parent-fed pool on RabbitMQ (``amqp_too``)."""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.integration.harness import ROOT, WorkerProcess, wait_for

pytestmark = pytest.mark.integration

SETTING_APP = """\
from engine import signals
from tests.apps.shop import *  # noqa: F403 - the shop's tasks
from tests.apps.shop import app, ledger

app.conf.worker_max_tasks_per_child = 3


@signals.worker_process_init.connect
def _init(**kwargs):
    ledger("init -")


@signals.worker_process_shutdown.connect
def _shutdown(**kwargs):
    ledger("shutdown -")
"""

HOG_APP = """\
import os
import signal

from tests.apps.shop import *  # noqa: F403 - the shop's tasks
from tests.apps.shop import app

KEPT = []  # what a leaky task keeps: the child's resident memory only grows


@app.task(name="hog.keep")
def keep(mib: int) -> tuple[int, int]:
    # This child's pid and resident KiB, after it kept ``mib`` MiB more.
    KEPT.append(b"\\x01" * (mib << 20))  # written, so resident (not a lazily zeroed mapping)
    with open("/proc/self/statm") as fh:
        return os.getpid(), int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
"""


def _ledger_pids(ledger: Path) -> dict[str, list[int]]:
    """Task id → the pids that ran it (``shop.record`` writes "TAG ID PID TIME")."""
    runs: dict[str, list[int]] = {}
    for line in ledger.read_text().splitlines():
        tag, task_id, pid = line.split()[:3]
        if tag.startswith("rc"):
            runs.setdefault(task_id, []).append(int(pid))
    return runs


def _stats(app: Any) -> dict[str, Any]:
    replies: dict[str, Any] = {}

    def answered() -> bool:
        replies.update(app.control.inspect(timeout=2).stats() or {})
        return bool(replies)

    wait_for(answered, 30, "an inspect stats reply")
    [stats] = replies.values()
    return stats


def _recycled_run(shop: ModuleType, worker: WorkerProcess, ledger: Path, per_child: int) -> None:
    """20 tasks on ``-c 2``: each ran once, no child ran more than ``per_child``, at least
    20 / per_child children did, and the pool is back at two processes, answering stats."""
    results = [shop.record.delay(f"rc{i}") for i in range(20)]
    assert [r.get(timeout=60) for r in results] == [f"rc{i}" for i in range(20)]
    runs = _ledger_pids(ledger)
    assert sorted(runs) == sorted(r.id for r in results)
    assert all(len(pids) == 1 for pids in runs.values()), runs  # none ran twice
    by_pid = Counter(pids[0] for pids in runs.values())
    assert max(by_pid.values()) <= per_child, by_pid
    assert len(by_pid) >= -(-20 // per_child), by_pid
    assert _stats(shop.app)["pool"]["max-tasks-per-child"] == per_child
    recycled = {pid for pid, n in by_pid.items() if n == per_child}

    def settled() -> bool:
        """Two processes, none of them recycled (the last one's replacement may be forking), and
        all 20 tasks counted: live children report theirs each upkeep tick, a recycled one at exit."""
        stats = _stats(shop.app)
        processes = set(stats["pool"]["processes"])
        return len(processes) == 2 and not processes & recycled and sum(stats["total"].values()) == 20

    wait_for(settled, 30, "a pool of two fresh processes, all 20 tasks counted")
    _no_child_lost(worker)


def _no_child_lost(worker: WorkerProcess) -> None:
    """A recycled child's exit is not a crash: neither Celery's lost-job line nor the exit line."""
    log = worker.log()
    assert "exited prematurely" not in log and "exited with" not in log, log


@pytest.mark.amqp_too
def test_max_tasks_per_child_replaces_each_child_after_its_nth_task(
    shop: ModuleType, start_worker: Callable[..., WorkerProcess], ledger: Path
) -> None:
    """Before: "--max-tasks-per-child is not supported", exit 2. Now each child exits after its
    third task (settled first) and a fresh one is forked: nothing lost, nothing run twice."""
    worker = start_worker("-c", "2", "--max-tasks-per-child", "3")
    _recycled_run(shop, worker, ledger, 3)


def test_max_tasks_per_child_setting_recycles_without_the_flag(
    shop: ModuleType, start_worker: Callable[..., WorkerProcess], ledger: Path, tmp_path: Path
) -> None:
    """Before: the setting was ignored, each child ran 9 to 11 of the 20 tasks. Now it recycles
    as the flag does (the flag, when given, wins: it sets the same setting)."""
    (tmp_path / "setting_shop.py").write_text(SETTING_APP)
    path = os.pathsep.join([str(ROOT), str(tmp_path)])
    worker = start_worker("-c", "2", app="setting_shop", env={"PYTHONPATH": path})
    _recycled_run(shop, worker, ledger, 3)
    lines = [line.split() for line in ledger.read_text().splitlines()]
    ran = {int(pid) for tag, _, pid, _ in lines if tag.startswith("rc")}
    recycled = {pid for pid, n in Counter(int(p) for t, _, p, _ in lines if t.startswith("rc")).items() if n == 3}
    assert ran <= {int(pid) for tag, _, pid, _ in lines if tag == "init"}  # each child's, as it started
    assert recycled <= {int(pid) for tag, _, pid, _ in lines if tag == "shutdown"}  # and as it went


@pytest.mark.amqp_too
def test_max_memory_per_child_replaces_a_child_after_the_task_that_crossed_the_limit(
    shop: ModuleType, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """Before: "--max-memory-per-child is not supported", exit 2. Now the task that takes the
    child past the limit completes, and the next task runs in a fresh child; below the limit
    a child is kept."""
    (tmp_path / "hog_shop.py").write_text(HOG_APP)
    path = os.pathsep.join([str(ROOT), str(tmp_path)])
    probe = start_worker("-c", "1", "-Q", "probe", name="probe", app="hog_shop", env={"PYTHONPATH": path})
    _, at_rest = shop.app.send_task("hog.keep", [0], queue="probe").get(timeout=30)  # a child's size here
    probe.close()
    limit = at_rest + 30_000  # KiB: well above a child at rest, well below one keeping 60 MiB
    worker = start_worker("-c", "1", "--max-memory-per-child", str(limit), app="hog_shop", env={"PYTHONPATH": path})
    first, _ = shop.app.send_task("hog.keep", [0]).get(timeout=30)
    assert shop.app.send_task("hog.keep", [0]).get(timeout=30)[0] == first  # under the limit: kept
    assert shop.app.send_task("hog.keep", [60]).get(timeout=30)[0] == first  # crosses it, completes
    assert shop.app.send_task("hog.keep", [0]).get(timeout=30)[0] != first  # a fresh child
    log = worker.log()
    assert "resident memory" in log and "exited prematurely" not in log, log


def test_a_recycled_childs_results_written_behind_are_stored_before_it_exits(
    rel: ModuleType, start_worker: Callable[..., WorkerProcess], ledger: Path
) -> None:
    """A work-sharing child on Redis writes late-ack results behind (``engine.backend.held``);
    one recycled after each task stores them and acks their messages before it exits: every
    result is readable, and none of the tasks ran again (a result still held when a child dies
    makes its task run again)."""
    start_worker("-c", "1", "--max-tasks-per-child", "1", app="tests.apps.reliability")
    results = [rel.record_late.delay(f"held{i}") for i in range(6)]
    assert [r.get(timeout=60) for r in results] == [f"held{i}" for i in range(6)]
    runs = [line.split() for line in ledger.read_text().splitlines() if line.startswith("run held")]
    assert sorted(r[2] for r in runs) == sorted(r.id for r in results)  # each ran exactly once
    assert len({r[3] for r in runs}) == 6  # each in a child of its own


@pytest.mark.parametrize("transport", ["amqp"], indirect=True)
def test_parent_fed_orders_too_large_for_a_packet_survive_recycling(
    shop: ModuleType, start_worker: Callable[..., WorkerProcess], ledger: Path, transport: str
) -> None:
    """The parent-fed pool sends an order too large for the shared queue's packets to one idle
    child's inbox; a child that recycles with one there (it took a small task first) leaves it
    to another child, neither lost ("Worker exited prematurely") nor run twice."""
    worker = start_worker("-c", "2", "--max-tasks-per-child", "1")
    tags = [f"rc{i}-" + ("x" * 6000 if i % 2 else "") for i in range(16)]
    results = [shop.record.delay(tag) for tag in tags]
    assert [r.get(timeout=60) for r in results] == tags
    runs = _ledger_pids(ledger)
    assert sorted(runs) == sorted(r.id for r in results)
    assert all(len(pids) == 1 for pids in runs.values()), runs
    assert len({pids[0] for pids in runs.values()}) == 16  # one task a child
    _no_child_lost(worker)


@pytest.mark.amqp_too
def test_recycling_under_autoscale_keeps_the_pool_within_its_bounds(
    shop: ModuleType, start_worker: Callable[..., WorkerProcess], ledger: Path
) -> None:
    """A recycled child is replaced, never counted as one the autoscaler retired: with
    ``--autoscale 3,1`` the pool stays between 1 and 3 processes while every task runs once."""
    worker = start_worker("--autoscale", "3,1", "--max-tasks-per-child", "2")
    results = [shop.slow_early.delay(0.05, f"rc{i}") for i in range(24)]
    assert len([r.get(timeout=90) for r in results]) == 24
    ends = [line.split() for line in ledger.read_text().splitlines() if line.startswith("end rc")]
    assert sorted(e[2] for e in ends) == sorted(r.id for r in results)  # each ran once
    assert max(Counter(e[3] for e in ends).values()) <= 2
    wait_for(lambda: 1 <= len(_stats(shop.app)["pool"]["processes"]) <= 3, 30, "a pool within its bounds")
    _no_child_lost(worker)


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_other_pools_accept_the_flags_and_ignore_them_as_celerys_do(
    shop: ModuleType, start_worker: Callable[..., WorkerProcess], pool: str
) -> None:
    """Before: refused (exit 2). Now accepted, and the tasks run in the worker process itself,
    as in Celery 5.7, whose thread and solo pools take the option and do nothing with it."""
    worker = start_worker("-P", pool, "--max-tasks-per-child", "1", "--max-memory-per-child", "1")
    assert {shop.pid.delay().get(timeout=30) for _ in range(4)} == {worker.pid}


@pytest.mark.amqp_too
def test_a_warm_stop_while_children_recycle_hands_back_what_did_not_run(
    shop: ModuleType, start_worker: Callable[..., WorkerProcess], ledger: Path
) -> None:
    """SIGTERM while children come and go: the worker exits 0, every task that started finished,
    and what never started is run by the next worker: each of the 40 tasks ends exactly once."""
    first = start_worker("-c", "2", "--max-tasks-per-child", "1", name="w1")
    results = [shop.slow_early.delay(0.05, f"rc{i}") for i in range(40)]

    def ended() -> list[list[str]]:
        return [line.split() for line in ledger.read_text().splitlines() if line.startswith("end rc")]

    wait_for(lambda: len(ended()) >= 6, 60, "a few tasks done, children recycled")
    first.signal(signal.SIGTERM)
    assert first.wait(60) == 0
    _no_child_lost(first)
    start_worker("-c", "2", name="w2")
    assert len([r.get(timeout=90) for r in results]) == 40
    assert sorted(e[2] for e in ended()) == sorted(r.id for r in results)  # each ended once
    starts = [line.split()[2] for line in ledger.read_text().splitlines() if line.startswith("start rc")]
    assert sorted(starts) == sorted(r.id for r in results)  # and started once: none cut short
