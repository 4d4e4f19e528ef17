"""Custom remote-control commands, on our App (``tqctl worker -A tests.apps.remote_commands``).

The command functions are plain ``fun(state, **arguments)`` handlers, written once here;
``tests/apps/remote_celery.py`` registers the very same functions with Celery's decorators on a
``celery.Celery`` app, so a Celery worker and ours run identical command code. Two ways to register
on our side: the module-level decorators (found because this module defines the app's tasks) and
``app.control_command`` (kept by this app only). This module never imports celery.
"""

from __future__ import annotations

from typing import Any

from engine import App
from engine.worker.control import add_consumer, inspect_command

app = App("remote_commands")

# name -> (function, type, options): what remote_celery.py registers on the Celery side too.
COMMANDS: dict[str, tuple[Any, str, dict[str, Any]]] = {}


def add_numbers(x: int, y: int) -> int:
    return x + y


add = app.task(name="remote.add", rate_limit="50/s")(add_numbers)


def echo(state: Any, word: str = "", n: int = 1, **kwargs: Any) -> dict[str, str]:
    """Repeat WORD N times (reads nothing but its arguments and the worker's name)."""
    return {"ok": f"{state.hostname}: {' '.join([word] * int(n))}"}


def consume_too(state: Any, queue: str, **kwargs: Any) -> dict[str, str]:
    """Start consuming QUEUE as well, through the builtin add_consumer."""
    add_consumer(state, queue)
    return {"ok": f"consuming {queue} too"}


def args_of(state: Any, *_: Any, **kwargs: Any) -> dict[str, Any]:
    """Reply with the keyword arguments received, sorted (shows what a client sent)."""
    return {"ok": sorted(kwargs.items())}


COMMANDS["echo"] = (echo, "inspect", {"args": [("word", str), ("n", int)], "signature": "WORD [N=1]"})
COMMANDS["consume_too"] = (consume_too, "control", {"args": [("queue", str)], "signature": "QUEUE"})
COMMANDS["args_of"] = (args_of, "inspect", {"variadic": "words", "signature": "[WORD...]"})

inspect_command(**COMMANDS["echo"][2])(echo)
app.control_command(**COMMANDS["consume_too"][2])(consume_too)
inspect_command(**COMMANDS["args_of"][2])(args_of)


def retry_later(task: Any, reason: str) -> None:
    """Retry in five minutes: the stored RETRY state stays readable while the test looks."""
    raise task.retry(exc=ValueError(reason), countdown=300)


retry_later_task = app.task(name="remote.retry_later", bind=True)(retry_later)


@app.inspect_command()
def not_json(state: Any, **kwargs: Any) -> object:
    """A bug: the reply cannot be sent as JSON (ours only; the worker must keep answering)."""
    return {"seen": object()}
