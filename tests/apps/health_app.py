"""An app whose consumer can be wedged on purpose, for the health-file test.

A ``task_received`` receiver runs on the thread that took the message (the consumer's, when the
worker is idle); for ``health_app.wedge`` it never returns, so that thread is stuck exactly as a
deadlocked consumer would be, while the heartbeat thread carries on.
"""

from __future__ import annotations

import threading
from typing import Any

from engine import App
from engine.signals import task_received

app = App("health_app")
_never = threading.Event()


@app.task(name="health_app.wedge")
def wedge() -> None:
    return None


@app.task(name="health_app.add")
def add(x: int, y: int) -> int:
    return x + y


@task_received.connect
def _stick(sender: Any = None, request: Any = None, **_: Any) -> None:
    if getattr(request, "name", None) == "health_app.wedge":
        _never.wait()
