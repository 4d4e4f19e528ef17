"""User Guide, Signals: the worker-side task signals carry the keyword arguments Celery 5.7's do, so
a receiver written for Celery (``def on_success(sender, result, runtime, **kw)``) runs unchanged."""

from __future__ import annotations

from typing import Any

from engine import App, signals
from engine.request import Request
from engine.trace import run

NOWHERE = "redis://127.0.0.1:1/0"


def test_task_success_gives_result_and_runtime() -> None:
    app = App("ug_signals", broker=NOWHERE)
    task = app.task(name="ug.double")(lambda x: x * 2)
    seen: list[dict[str, Any]] = []

    def receiver(sender: Any = None, result: Any = None, runtime: float | None = None, **kw: Any) -> None:
        seen.append({"sender": sender, "result": result, "runtime": runtime, "rest": sorted(kw)})

    signals.task_success.connect(receiver)
    try:
        run(app, task, Request(id="s-1", name=task.name, args=[21], called_directly=False), store=False)
    finally:
        signals.task_success.disconnect(receiver)
    (call,) = seen
    assert call["sender"] is task and call["result"] == 42 and call["rest"] == ["signal"]
    assert isinstance(call["runtime"], float) and call["runtime"] >= 0
    app.close()
