"""Real worker processes for integration tests: start, signal, wait, read their logs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class ChildProcess:
    """A real subprocess in its own session, logging to a file; killed with its whole group."""

    ready_marker = " ready"

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 15.0):  # noqa: ANN201 - returns self, typed by subclasses
        wait_for(
            lambda: self.ready_marker in self.log() or self.proc.poll() is not None,
            timeout,
            f"{type(self).__name__} to become ready",
        )
        if self.proc.poll() is not None:
            raise AssertionError(f"{type(self).__name__} exited early:\n{self.log()}")
        return self

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill_group()
        self._log.close()


class WorkerProcess(ChildProcess):
    """``python -m tqctl worker -A app ...`` on the given broker."""

    ready_marker = " ready: "

    def __init__(
        self, broker_url: str, args: list[str], log_path: Path, env: dict[str, str], app: str = "tests.apps.shop"
    ) -> None:
        inherited = {k: v for k, v in os.environ.items() if k != "TQCTL_BACKEND"}  # only ``env`` may set it
        full_env = {**inherited, "TQCTL_BROKER": broker_url, "PYTHONPATH": str(ROOT), **env}
        super().__init__([sys.executable, "-m", "tqctl", "worker", "-A", app, *args], log_path, full_env)


class CeleryWorkerProcess(ChildProcess):
    """``python -m celery -A app worker -P solo`` (the real Celery 5.7) with its log."""

    ready_marker = " ready."

    def __init__(self, app: str, queues: str, name: str, log_path: Path, env: dict[str, str]) -> None:
        inherited = {k: v for k, v in os.environ.items() if k != "TQCTL_BACKEND"}  # only ``env`` may set it
        full_env = {**inherited, "PYTHONPATH": str(ROOT), **env}
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-P",
            "solo",
            "-c",
            "1",
            "-Q",
            queues,
            "--without-mingle",
            "--without-gossip",
            "-l",
            "info",
            "-n",
            f"{name}@%h",
        ]
        super().__init__(argv, log_path, full_env)

    def wait_ready(self, timeout: float = 30.0) -> CeleryWorkerProcess:
        return super().wait_ready(timeout)


class CeleryPrefork(ChildProcess):
    """``celery -A tests.apps.remote_celery worker -P prefork ...`` (the real Celery 5.7)."""

    ready_marker = " ready."

    def __init__(self, url: str, name: str, log_path: Path, *args: str, backend: str | None = None) -> None:
        env = {**os.environ, "REMOTE_BROKER": url, "REMOTE_BACKEND": backend or url, "PYTHONPATH": str(ROOT)}
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.apps.remote_celery",
            "worker",
            "-P",
            "prefork",
            "-n",
            f"{name}@%h",
            "-l",
            "info",
            "--without-mingle",
            "--without-gossip",
            *args,
        ]
        super().__init__(argv, log_path, env)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextlib.contextmanager
def reaped(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """A process the test talks to: killed, and its pipes drained, if it still runs at the end."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
