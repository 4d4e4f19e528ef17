"""Item 8: the broker password never shows in ``ps``. ``tqctl worker --broker URL`` re-execs
itself, and ``tqctl up`` starts workers and beat: every one of those processes (and each prefork
child) must carry the password in its environment only, never in /proc/<pid>/cmdline."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.harness import FaultServer
from tests.faults.procs import children_of, cmdline
from tests.integration.harness import ROOT, wait_for

pytestmark = pytest.mark.integration
SECRET = "s3cret-Pa55word"


@pytest.fixture
def broker(make_server: Callable[..., FaultServer]) -> FaultServer:
    """On TCP: the password rides in a ``redis://:password@host:port`` URL, as users write it."""
    return make_server("broker", tcp=True)


@pytest.fixture
def locked(broker: FaultServer) -> str:
    """The test's broker with a password; the URL that carries it."""
    with broker.client() as client:
        client.config_set("requirepass", SECRET)
    return broker.url.replace("redis://", f"redis://:{SECRET}@", 1)


def tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children_of(p))
    return found


def leaks(pids: list[int]) -> dict[int, str]:
    return {pid: line for pid in pids if SECRET in (line := cmdline(pid))}


def test_worker_reexec_keeps_the_password_out_of_argv(locked: str, counter_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FAULT_COUNTER_URL": counter_url}
    env.pop("TQCTL_BROKER", None)
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tqctl",
                "worker",
                "-A",
                "tests.apps.faults",
                "-P",
                "prefork",
                "-c",
                "2",
                "-n",
                "secret@%h",
                "--broker",
                locked,
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: " ready: " in log.read_text(errors="replace") or proc.poll() is not None, 30, "worker ready")
        assert proc.poll() is None, log.read_text()
        wait_for(lambda: len(children_of(proc.pid)) >= 2, 30, "two pool children")
        pids = tree(proc.pid)
        assert "--broker" in cmdline(proc.pid)  # still the user's command line, the URL masked
        assert leaks(pids) == {}, f"password in argv of {sorted(leaks(pids))}"
        assert SECRET not in log.read_text(errors="replace")
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(10)


def test_up_passes_the_broker_through_the_environment(
    locked: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tqctl up`` with the console replaced by a look at what it started (the real processes)."""
    from tqctl.tui import launch

    seen: dict[int, str] = {}

    def look(**kwargs: object) -> str:
        owned = kwargs["owned"]
        procs = owned.procs  # type: ignore[attr-defined]
        for _label, _proc, log in procs:
            wait_for(
                lambda log=log: " ready" in log.read_text(errors="replace") or "beat" in log.name,
                40,
                f"{log.name} ready",
            )
        for _label, proc, _log in procs:
            for pid in tree(proc.pid):
                seen[pid] = cmdline(pid)
        return "stop"

    monkeypatch.setattr(launch, "open_console", look)
    monkeypatch.setattr(launch, "has_terminal", lambda: True)  # (pytest's stdin is none)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.chdir(ROOT)
    launch.up(
        app_spec="tests.apps.faults",
        concurrency=1,
        workers=2,
        beat=True,
        detach=False,
        pool="prefork",
        queues="",
        broker=locked,
        state_dir=str(tmp_path / "state"),
        read_only=True,
        say=lambda _line: None,
    )
    assert len(seen) >= 5  # two workers, their children, beat
    assert {pid: line for pid, line in seen.items() if SECRET in line} == {}
