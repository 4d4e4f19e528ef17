"""Tasks and hooks for the cold-stop tests (``tests/integration/test_cold_stop.py``).

Tasks hold their process until a gate file exists (they never see it in these tests), so a
worker that stops warm would wait on them for its whole shutdown timeout: only a cold stop
ends them. ``LEDGER`` names a file where tasks append ``<what> <tag> <task id> <pid>``.
Hooks are switched on by environment variables, so each test chooses the trouble it needs.
"""

from __future__ import annotations

import os
import signal
import time

from engine import App, signals

app = App("cold_stop")
app.conf.tqctl_shutdown_timeout = 600.0  # far beyond any test's patience: a warm stop never ends in time
app.conf.tqctl_owner_timeout = 3.0
app.conf.tqctl_heartbeat_interval = 0.5
HOLD = 120.0  # seconds a held task waits for its gate at most (a leftover process ends on its own)


def ledger(line: str) -> None:
    path = os.environ.get("LEDGER")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{line} {os.getpid()}\n")


def _hold(tag: str, task_id: str) -> str:
    """Wait for the gate ``HOLD_GATE`` names. With ``HOLD_DEAF`` set, the task first ignores the
    signals a stopping worker sends its children (SIGTERM, SIGUSR1), as a task stuck where no
    Python handler runs would: only SIGKILL ends it."""
    if os.environ.get("HOLD_DEAF"):
        for signum in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(signum, signal.SIG_IGN)
    ledger(f"start {tag} {task_id}")
    gate = os.environ.get("HOLD_GATE", "")
    deadline = time.monotonic() + HOLD
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    ledger(f"end {tag} {task_id}")
    return tag


@app.task(bind=True, acks_late=True)
def hold_late(self, tag: str) -> str:
    return _hold(tag, self.request.id)


@app.task(bind=True)
def hold_early(self, tag: str) -> str:
    return _hold(tag, self.request.id)


@app.task(bind=True)
def record(self, tag: str) -> str:
    ledger(f"run {tag} {self.request.id}")
    return tag


def _second_ctrl_c(sender: object, **kwargs: object) -> None:
    """The second Ctrl-C, arriving while the worker still handles the first (its handler sends
    ``worker_shutting_down`` before it marks the worker stopping): once only."""
    if not _pressed:
        _pressed.append(True)
        os.kill(os.getpid(), signal.SIGINT)


_pressed: list[bool] = []
if os.environ.get("SECOND_CTRL_C_INSIDE"):
    signals.worker_shutting_down.connect(_second_ctrl_c)
