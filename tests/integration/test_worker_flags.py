"""Celery's ``worker`` flags on ``tqctl worker``, each checked on a real worker process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from engine.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from tests.integration.harness import ROOT, WorkerProcess, reaped, wait_for

pytestmark = pytest.mark.integration

QUIET_APP = """\
from tests.apps.shop import *  # noqa: F403 - the shop's tasks, events turned off by the config
from tests.apps.shop import app

app.conf.worker_send_task_events = False
"""

EXTRA_TASKS = """\
from tests.apps.shop import app


@app.task(name="extra.triple")
def triple(x: int) -> int:
    return 3 * x
"""


def tqctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    argv = [sys.executable, "-m", "tqctl", *args]
    return subprocess.run(argv, cwd=ROOT, env=full, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_time_limit_flag_kills_a_five_second_task(
    shop: ModuleType, start_worker: Callable[..., WorkerProcess], pool: str
) -> None:
    """Before: "No such option: --time-limit". Now it is the worker-wide task_time_limit: a task
    with no limit of its own that sleeps 5 s ends FAILURE with TimeLimitExceeded(1.0)."""
    start_worker("-P", pool, "-c", "1", "--time-limit", "1")
    result = shop.slow_early.delay(5)
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=30)
    assert result.state == "FAILURE"


def test_soft_time_limit_flag_raises_in_the_task(shop: ModuleType, start_worker: Callable[..., WorkerProcess]) -> None:
    """Before: "No such option: --soft-time-limit". Now a 5 s task gets SoftTimeLimitExceeded."""
    start_worker("-c", "1", "--soft-time-limit", "1", "--time-limit", "20")
    with pytest.raises(SoftTimeLimitExceeded):
        shop.slow_early.delay(5).get(timeout=30)


def test_dash_e_turns_task_events_on_over_the_config(
    shop: ModuleType, start_worker: Callable[..., WorkerProcess], tmp_path: Path, broker_url: str
) -> None:
    """Before: "No such option: -E". Now -E (with the other Celery flags a deploy script carries,
    which tqctl accepts) makes a worker whose app sets worker_send_task_events=False send them."""
    (tmp_path / "quiet_shop.py").write_text(QUIET_APP)
    path = os.pathsep.join([str(ROOT), str(tmp_path)])
    flags = ["-E", "-Ofair", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    flags += ["-S", str(tmp_path / "state.db"), "-s", str(tmp_path / "beat-schedule")]
    start_worker(*flags, app="quiet_shop", env={"PYTHONPATH": path})
    argv = [sys.executable, "-m", "tqctl", "tail", "--count", "1", "--state", "SUCCESS", "--json", "--for", "60"]
    env = {**os.environ, "TQCTL_BROKER": broker_url, "PYTHONPATH": str(ROOT)}
    tail = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with reaped(tail):  # a task each round until tail, subscribed at some point, hears one succeed
        wait_for(lambda: tail.poll() is not None or (shop.add.delay(1, 2).get(timeout=30) and False), 60, "an event")
        out, err = tail.communicate(timeout=10)
    assert tail.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["state"] == "SUCCESS"


def test_logfile_gets_the_worker_log(
    shop: ModuleType, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """Before: "No such option: --logfile". Now the worker's and its tasks' lines go to the file
    (``%n`` expanded as Celery does), not to stderr."""
    (tmp_path / "logs").mkdir()  # not tmp_path/lf.log: that is where the harness keeps stderr
    worker = start_worker("-f", str(tmp_path / "logs" / "%n.log"), name="lf", ready=False)
    logfile = tmp_path / "logs" / "lf.log"
    wait_for(lambda: logfile.exists() and " ready: " in logfile.read_text(), 30, "the ready line in the logfile")
    result = shop.add.delay(2, 3)
    assert result.get(timeout=30) == 5
    wait_for(lambda: f"[{result.id}] succeeded" in logfile.read_text(), 15, "the task's line in the logfile")
    assert f"[{result.id}]" not in worker.log()


def test_pidfile_holds_the_pid_refuses_a_second_worker_and_goes_at_exit(
    start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """Before: "No such option: --pidfile". Now the file holds the worker's pid while it runs, a
    second worker on the same file is refused in one line (exit 2), and a warm shutdown removes it."""
    pidfile = tmp_path / "w.pid"
    worker = start_worker("--pidfile", str(pidfile))
    assert pidfile.read_text().strip() == str(worker.pid)
    second = tqctl("worker", "-A", "tests.apps.shop", "--pidfile", str(pidfile))
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [
        f"tqctl: error: --pidfile: {str(pidfile)!r} holds pid {worker.pid}, which is running"
    ]
    worker.signal(signal.SIGTERM)
    assert worker.wait(60) == 0
    assert not pidfile.exists()


def test_celerys_other_spellings_of_pool_and_level_run(
    shop: ModuleType, start_worker: Callable[..., WorkerProcess]
) -> None:
    """Before: "unknown pool 'processes'" and "unknown log level 'FATAL'", both choices Celery's
    worker offers. Now ``-P processes`` is the prefork pool and ``-l FATAL`` is CRITICAL."""
    worker = start_worker("-P", "processes", "-l", "FATAL", ready=False)  # FATAL hides the ready line
    assert shop.pid.delay().get(timeout=30) in worker.children()
    assert " ready: " not in worker.log()


def test_include_imports_modules_whose_tasks_then_run(
    shop: ModuleType, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """Before: "No such option: -I". Now ``-I a,b`` imports the modules at start, as Celery's does:
    a task defined only there runs."""
    (tmp_path / "extra_tasks.py").write_text(EXTRA_TASKS)
    path = os.pathsep.join([str(ROOT), str(tmp_path)])
    start_worker("-I", "extra_tasks,tests.apps.shop", env={"PYTHONPATH": path})
    assert shop.app.send_task("extra.triple", [2]).get(timeout=30) == 6


def test_exclude_queues_drops_them_from_what_the_worker_consumes(
    start_worker: Callable[..., WorkerProcess], broker_url: str
) -> None:
    """Before: "No such option: -X". Now ``-Q high,celery -X celery`` consumes high only, and an
    -X that leaves nothing (the default queue excluded) is one line and exit 1, not an idle worker."""
    worker = start_worker("-Q", "high,celery", "-X", "celery")
    ready = next(line for line in worker.log().splitlines() if " ready: " in line)
    assert ready.endswith("queues=high"), ready
    done = tqctl("worker", "-A", "tests.apps.shop", "-X", "celery", env={"TQCTL_BROKER": broker_url})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == ["tqctl: error: -X celery leaves no queue to consume"]


def test_purge_deletes_what_waits_in_the_workers_queues_before_it_starts(
    shop: ModuleType, start_worker: Callable[..., WorkerProcess]
) -> None:
    """Before: "No such option: --purge". Now the three tasks sent before the worker started are
    deleted, logged as such, and the solo worker's first task is the one sent after."""
    old = [shop.add.apply_async((i, i), queue="purgeme") for i in range(3)]
    worker = start_worker("-P", "solo", "-Q", "purgeme", "--purge")
    assert "purged 3 message(s) from 'purgeme' before starting" in worker.log()
    assert shop.add.apply_async((5, 5), queue="purgeme").get(timeout=30) == 10
    assert [r.state for r in old] == ["PENDING"] * 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-D"], "-D/--detach is not supported: run the worker under systemd (deploy/systemd/"),
        (["--max-tasks-per-child", "0"], "Invalid value for '--max-tasks-per-child'"),
        (["--max-tasks-per-child", "2.5"], "Invalid value for '--max-tasks-per-child'"),
        (["--max-memory-per-child", "-1"], "Invalid value for '--max-memory-per-child'"),
        (["--max-memory-per-child", "lots"], "Invalid value for '--max-memory-per-child'"),
        (["--disable-prefetch"], "--disable-prefetch is not supported: use --prefetch-multiplier 1"),
        (["--uid", "nobody"], "--uid/--gid is not supported: start the worker as that user"),
        (["--time-limit", "0"], "--time-limit takes a number of seconds above 0, not 0.0"),
        (["--soft-time-limit", "-1"], "--soft-time-limit takes a number of seconds above 0, not -1.0"),
        (["--time-limit", "1", "--soft-time-limit", "2"], "--soft-time-limit (2.0) must not be above --time-limit"),
        (["-O", "fast"], "-O takes default or fair, not 'fast'"),
        (["--logfile", "/nonexistent-folder/w.log"], "--logfile: folder '/nonexistent-folder' does not exist"),
        (["--pidfile", "%q.pid"], "--pidfile: unknown format key %q"),
    ],
)
def test_refused_flags_and_bad_values_get_one_line_and_exit_2(args: list[str], message: str) -> None:
    """Before: "No such option" for every one of them. Now the flags tqctl cannot honour and bad
    values are refused before the worker starts, in one line naming the flag."""
    done = tqctl("worker", "-A", "tests.apps.shop", *args, env={"TQCTL_BROKER": "redis://127.0.0.1:1/0"})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
