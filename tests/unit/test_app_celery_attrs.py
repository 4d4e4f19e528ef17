"""Celery app attributes and helpers a Celery project calls outside of tasks: ``app.now()``,
``app.timezone``, ``app.bugreport()``, ``app.log.setup_logging_subsystem(...)``, ``uuid()``,
``anon_nodename()``, the ``%n``/``%h``/``%i`` expansion of log file names, and ``cpu_budget()``."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import engine
from engine import App
from engine.exceptions import ImproperlyConfigured
from engine.utils.nodenames import anon_nodename, default_nodename, host_format, node_format, nodesplit
from engine.utils.sysinfo import cgroup_cpu_quota, cpu_budget, is_auto_concurrency

ROOT = Path(__file__).resolve().parents[2]


def test_now_is_aware_and_in_the_apps_time_zone() -> None:
    app = App("clock")
    assert app.timezone is dt.timezone.utc
    assert app.now().utcoffset() == dt.timedelta(0)
    app.conf.timezone = "Asia/Kolkata"
    assert app.timezone == ZoneInfo("Asia/Kolkata")
    assert app.now().utcoffset() == dt.timedelta(hours=5, minutes=30)
    app.conf.timezone = ZoneInfo("America/New_York")  # a tzinfo object, as Celery accepts
    assert app.now().tzinfo == ZoneInfo("America/New_York")
    app.conf.timezone = "Mars/Olympus"
    with pytest.raises(ImproperlyConfigured, match="Mars/Olympus"):
        app.now()


def test_bugreport_masks_every_password() -> None:
    app = App("report", broker="redis://:brokerpw@h:6379/0")
    app.conf.result_backend = "sentinel://:secret1@h1:26379;sentinel://:secret2@h2:26379/0"
    report = app.bugreport()
    assert "software -> celery:5.7.0" in report
    assert "brokerpw" not in report and "secret1" not in report and "secret2" not in report
    assert "sentinel://:********@h1:26379;sentinel://:********@h2:26379/0" in report  # Celery's mask
    app.conf.result_backend = "redis://user:p,a@ss@localhost:6379/0"  # an @ inside the password
    assert "redis://user:********@localhost:6379/0" in app.bugreport()
    app.conf.result_backend = "cache+memcached://10.0.0.1:11211;10.0.0.2:11211/"
    assert "cache+memcached://10.0.0.1:11211;10.0.0.2:11211/" in app.bugreport()


def test_uuid_and_anon_nodename() -> None:
    a, b = engine.uuid(), engine.uuid()
    assert a != b and len(a) == 36 and a.count("-") == 4
    assert anon_nodename() == f"gen{os.getpid()}@{socket.gethostname()}"
    assert anon_nodename("box", prefix="beat") == f"beat{os.getpid()}@box"
    assert nodesplit("w1@box.example.com") == ("w1", "box.example.com")
    assert nodesplit("box") == (None, "box")
    assert default_nodename("box") == "celery@box"


@pytest.mark.parametrize(
    "template,expected",
    [
        ("%n.log", "worker.log"),
        ("%%n-%n.log", "%n-worker.log"),
        ("%h-%d.log", "example.com-com.log"),
        ("%p.log", "worker@example.com.log"),
        ("%i%I.log", "0.log"),  # the main process: index 0, and no -<index> suffix
    ],
)
def test_node_format_expands_as_celery_does(template: str, expected: str) -> None:
    assert node_format(template, "worker@example.com") == expected


def test_unknown_format_key_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="%x"):
        host_format("%x.log", "h")


def test_setup_logging_subsystem_writes_to_the_expanded_logfile(tmp_path: Path) -> None:
    """In a child process: logging's configuration is global, and this one must not leak."""
    script = textwrap.dedent(
        """
        import logging, sys
        from engine import App
        app = App("logs")
        app.log.setup_logging_subsystem(loglevel="INFO", logfile=sys.argv[1], hostname="node1@example.com")
        app.log.setup_logging_subsystem(loglevel="INFO", logfile=sys.argv[1] + ".second", hostname="x@y")
        logging.getLogger("mine").info("reached the file")
        logging.shutdown()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "%%n-%n.log")], check=True, env=env, timeout=60, cwd=ROOT
    )
    assert "reached the file" in (tmp_path / "%n-node1.log").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["%n-node1.log"]  # the second call changed nothing


def _cgroup(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[str, str]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (tmp_path / "self").write_text(proc)
    return str(root), str(tmp_path / "self")


def test_cpu_budget_is_capped_by_the_tightest_cgroup_quota(tmp_path: Path) -> None:
    root, proc = _cgroup(
        tmp_path,
        "0::/app/worker\n",
        {"app/cpu.max": "150000 100000\n", "app/worker/cpu.max": "max 100000\n", "cpu.max": "max 100000\n"},
    )
    assert cgroup_cpu_quota(root, proc) == 1.5
    budget = cpu_budget(root=root, proc_cgroup=proc)
    assert budget.quota == 1.5
    assert budget.count == min(budget.available, 2)  # 1.5 CPUs rounded up, never above what is available
    assert cpu_budget(use_cgroup_quota=False, root=root, proc_cgroup=proc).quota is None


def test_cpu_budget_reads_cgroup_v1_and_unlimited_quotas(tmp_path: Path) -> None:
    root, proc = _cgroup(
        tmp_path,
        "4:cpu,cpuacct:/job\n",
        {"cpu,cpuacct/job/cpu.cfs_quota_us": "50000\n", "cpu,cpuacct/job/cpu.cfs_period_us": "100000\n"},
    )
    assert cgroup_cpu_quota(root, proc) == 0.5
    assert cpu_budget(root=root, proc_cgroup=proc).count == 1  # never below one process
    root, proc = _cgroup(
        tmp_path / "v1max", "4:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "1\n"}
    )
    assert cgroup_cpu_quota(root, proc) is None
    assert is_auto_concurrency(" Auto ") and not is_auto_concurrency(4)
