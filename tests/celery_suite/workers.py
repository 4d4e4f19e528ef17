"""The worker under test: ``tqctl worker`` or ``celery worker`` as its own process, in its own session.

Started by the suite's pytest session itself (plugin.py), not by the runner, so it can carry the
name Celery's in-process test worker has, ``gen<pid of the test process>@<host>``
(``anon_nodename()``): the tests that address the worker by that name (``inspect`` replies keyed by
node, ``destination=[...]``) then reach the worker under test, as they do in Celery's own CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def worker_argv(kind: str, concurrency: int, name: str) -> list[str]:
    if kind == "engine":
        app = ["-A", "tests.celery_suite.worker_engine:app"]
        return [sys.executable, "-m", "tqctl", "worker", *app, "-P", "prefork", "-c", str(concurrency), "-n", name]
    return [
        *(sys.executable, "-m", "celery", "-A", "tests.celery_suite.worker_celery", "worker"),
        *("-P", "prefork", "-c", str(concurrency), "-n", name, "--without-mingle", "--without-gossip"),
    ]


@contextmanager
def running(
    kind: str, env: dict[str, str], log: Path, name: str = "suite@%h", concurrency: int = 2, wait: float = 120.0
) -> Iterator[subprocess.Popen[bytes]]:
    """The worker, ready when its log says so (``wait`` seconds at most); killed with its group after."""
    marker = " ready" if kind == "engine" else " ready."
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*worker_argv(kind, concurrency, name), "-l", "info"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pidfile = Path(env["SUITE_WORKER_PIDFILE"]) if env.get("SUITE_WORKER_PIDFILE") else None
    if pidfile is not None:  # so the runner can stop it should this process be killed first
        pidfile.write_text(str(proc.pid))
    try:
        deadline = time.monotonic() + wait
        while marker not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{kind} worker did not start; log {log}:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        proc.wait(10)
        if pidfile is not None:
            pidfile.unlink(missing_ok=True)


def anon_nodename() -> str:
    """Celery's ``anon_nodename()`` for this process: the name its in-process test worker takes."""
    import socket

    return f"gen{os.getpid()}@{socket.gethostname()}"
