"""Tasks for workflow tests (chain, group, chord) run by real worker processes."""

from __future__ import annotations

import os
import time

from engine import App

app = App("canvas")
app.conf.tqctl_owner_timeout = 3.0
app.conf.tqctl_heartbeat_interval = 0.5


def _ledger(line: str) -> None:
    path = os.environ.get("LEDGER")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{line} {os.getpid()}\n")


@app.task(name="canvas.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="canvas.mul")
def mul(x: int, y: int) -> int:
    return x * y


@app.task(name="canvas.tsum")
def tsum(values: list[int]) -> int:
    _ledger(f"tsum {sum(values)} {len(values)}")
    return sum(values)


@app.task(name="canvas.boom")
def boom(x: int) -> None:
    raise ValueError(f"boom {x}")


@app.task(name="canvas.on_error")
def on_error(task_id: str) -> None:
    _ledger(f"errback {task_id}")


@app.task(name="canvas.log_result")
def log_result(value: object) -> object:
    _ledger(f"link {value}")
    return value


@app.task(name="canvas.slow_add", acks_late=True)
def slow_add(x: int, y: int, delay: float = 0.05) -> int:
    time.sleep(delay)
    return x + y
