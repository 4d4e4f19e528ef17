"""Real worker processes for integration tests: start, signal, wait, read their logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    def __init__(self, broker_url: str, args: list[str], log_path: Path, env: dict[str, str],
                 app: str = "tests.apps.shop") -> None:
        full_env = {**os.environ, "TQCTL_BROKER": broker_url, "PYTHONPATH": str(ROOT), **env}
        full_env.pop("TQCTL_BACKEND", None)
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tqctl", "worker", "-A", app, *args],
            cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 15.0) -> WorkerProcess:
        wait_for(lambda: " ready: " in self.log() or self.proc.poll() is not None, timeout,
                 "worker to become ready")
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited early:\n{self.log()}")
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


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
