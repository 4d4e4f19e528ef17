"""Retry with edited arguments: load the original args (stored message, else the event repr),
open them as JSON in ``$VISUAL``/``$EDITOR`` with the console suspended, then send on confirm."""

from __future__ import annotations

import ast
import json
import os
import shlex
import subprocess
import tempfile
from typing import TYPE_CHECKING, Any

from textual.app import SuspendNotSupported

from tqctl.tui import verbs
from tqctl.tui.messages import Loaded

if TYPE_CHECKING:
    from textual.screen import Screen

    from tqctl.tui.app import TqctlApp


def from_repr(text: str | None, empty: Any) -> Any:
    """Best effort from an event's repr (``(1, 'a')``, ``{'k': 2}``); ``empty`` when it is not a literal."""
    if not text:
        return empty
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return list(value) if isinstance(value, tuple) else value


def run_editor(app: TqctlApp, text: str) -> str | None:
    """Edit ``text`` in the user's editor; None when the editor exits non-zero (``:cq`` cancels)."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    fd, path = tempfile.mkstemp(prefix="tqctl-retry-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        argv = [*shlex.split(editor), path]
        try:
            with app.suspend():
                code = subprocess.call(argv)
        except SuspendNotSupported:  # headless (tests): run it without a terminal
            code = subprocess.call(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if code != 0:
            return None
        with open(path) as fh:
            return fh.read()
    finally:
        os.unlink(path)


def start_edit_retry(
    screen: Screen, task_id: str, name: str | None, args: str | None, kwargs: str | None, queue: str | None
) -> None:
    """Kick off: load stored arguments in a worker; ``finish_edit_retry`` runs when they arrive."""
    app: TqctlApp = screen.app  # type: ignore[assignment]
    if app.read_only:
        app.refuse_read_only("retry with edited arguments")
        return
    adapter = app.source.adapter

    def load() -> None:
        try:
            stored = adapter.stored_arguments(task_id)
        except Exception as exc:
            screen.post_message(Loaded(f"edit:{task_id}", None, f"{type(exc).__name__}: {exc}"))
            return
        if stored is None:
            stored = {"args": from_repr(args, []), "kwargs": from_repr(kwargs, {}), "queue": queue, "guess": True}
        # The live view may know the task only from its task-failed event (the console started
        # after it was received), which carries no name: the stored message has it.
        stored["name"] = name or stored.get("name")
        screen.post_message(Loaded(f"edit:{task_id}", stored))

    screen.run_worker(load, thread=True, group="edit", exclusive=True)


def finish_edit_retry(app: TqctlApp, task_id: str, message: Loaded) -> None:
    data = message.data
    if message.error or not data or not data.get("name"):
        app.notify(message.error or "task name unknown: cannot send it again", severity="error")
        return
    if data["args"] is None or data["kwargs"] is None:
        app.notify("the event shows arguments that are not literals; edit them by hand", severity="warning")
    doc = {
        "args": data["args"] if data["args"] is not None else [],
        "kwargs": data["kwargs"] if data["kwargs"] is not None else {},
    }
    text = json.dumps(doc, indent=2, default=str) + "\n"
    edited = run_editor(app, text)
    if edited is None:
        app.notify("retry cancelled: the editor exited with an error", timeout=4)
        return
    try:
        parsed = json.loads(edited)
        new_args, new_kwargs = parsed["args"], parsed["kwargs"]
    except (ValueError, KeyError, TypeError) as exc:
        app.notify(f'not sent: the edited text is not {{"args": [...], "kwargs": {{...}}}} ({exc})', severity="error")
        return
    app.request_action(
        verbs.retry_edited(task_id, data["name"], new_args, new_kwargs, data.get("queue"), app.source.cli_broker)
    )
