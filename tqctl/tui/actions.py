"""Operator actions: confirmed on the UI thread, run in a thread worker, audited, answered by a Message.

An ``Action`` is a value: what it is (verb, target, exact scope), the equivalent ``tqctl``
command, whether it destroys anything, and the function that performs it through the adapter.
``ActionsMixin`` (mixed into the App) is the only path from a key press to the cluster.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.worker import get_current_worker

from tqctl.tui.adapter import ActionError
from tqctl.tui.messages import ActionDone, ActionProgress, Outcome

if TYPE_CHECKING:
    from textual.app import App

    from tqctl.tui.audit import AuditLog
    from tqctl.tui.model import ConsoleModel

    _AppBase = App[str | None]  # what the mixin is mixed into (``TqctlApp``), for the type checker
else:
    _AppBase = object

# Set by ``tqctl serve`` for its consoles: there the way to write is ``--write``, not leaving ``--read-only`` out.
READ_ONLY_HINT_ENV = "TQCTL_READ_ONLY_HINT"


def read_only_hint() -> str:
    return os.environ.get(READ_ONLY_HINT_ENV) or "--read-only"


@dataclass
class ActionContext:
    """Handed to long actions (a throttled group retry) so they can report and stop."""

    progress: Callable[[int, int], object]  # what it returns is ignored
    cancelled: Callable[[], bool]


Runner = Callable[[Any, ActionContext], Outcome]


@dataclass(frozen=True)
class Action:
    verb: str  # audit name: pool_grow, revoke, purge, ...
    title: str  # "Shut down 2 workers"
    target: str  # what it acts on, as the audit log records it
    scope: tuple[str, ...]  # exact scope, one line each, shown before anything is sent
    command: str  # the equivalent tqctl command
    run: Runner = field(repr=False, compare=False)
    destructive: bool = False
    confirm: bool = False  # ask even though nothing is destroyed (edited retries, bulk sends)
    typed: str | None = None  # this text must be typed to confirm (purge)
    button: str = "Confirm"
    enter_confirms: bool = False  # the focus on the button, not on Cancel (a mild change asked for anyway)
    write: bool = True


_ING = {"run": "running", "shut": "shutting", "stop consuming": "cancelling the consumer of"}


def in_progress(title: str) -> str:
    """``Revoke 2 tasks`` → ``revoking 2 tasks…``: said the moment an action starts, since a busy or
    paused broker can take seconds to answer and a key that shows nothing reads as a key not taken."""
    for start, said in _ING.items():
        if title.lower().startswith(start + " "):
            return f"{said} {title[len(start) + 1 :]}…"
    verb, _, rest = title.partition(" ")
    word = verb.lower()
    word = word[:-1] + "ing" if word.endswith("e") and not word.endswith("ee") else word + "ing"
    return f"{word} {rest}…" if rest else f"{word}…"


def cli(*parts: object, broker: str | None = None) -> str:
    """``tqctl …`` as a shell-safe line; ``broker`` is the masked URL when one was given explicitly."""
    words = ["tqctl", *(str(p) for p in parts)]
    if broker:
        words += ["--broker", broker]
    return shlex.join(words)


class ActionsMixin(_AppBase):
    """Mixed into ``TqctlApp``: request → (confirm) → thread worker → audit → ActionDone."""

    # set by TqctlApp.__init__
    source: Any
    read_only: bool
    audit: AuditLog
    pending_actions: int
    last_outcome: ActionDone | None
    model: ConsoleModel

    if TYPE_CHECKING:

        def refresh_screen(self, force: bool = False) -> None: ...

    def request_action(self, action: Action) -> None:
        if action.write and self.read_only:
            self.notify(
                f"{action.title}: not sent, the console is read-only ({read_only_hint()}).",
                title="read-only",
                severity="warning",
            )
            return
        if action.destructive or action.confirm or action.typed:
            from tqctl.tui.screens.dialogs import ConfirmScreen

            self.push_screen(ConfirmScreen(action), callback=lambda ok: self._execute(action) if ok else None)
        else:
            self._execute(action)

    def refuse_read_only(self, what: str) -> None:
        self.notify(
            f"{what}: not available, the console is read-only ({read_only_hint()}).",
            title="read-only",
            severity="warning",
        )

    def copy_command(self, command: str) -> None:
        self.copy_to_clipboard(command)
        self.notify(command, title="copied (OSC 52)", timeout=4)

    def _execute(self, action: Action) -> None:
        self.pending_actions += 1
        self.notify(in_progress(action.title), title=action.verb, timeout=5)
        self.run_worker(
            partial(self._run_action, action), thread=True, group="actions", name=action.verb, exit_on_error=False
        )

    def _run_action(self, action: Action) -> None:
        worker = get_current_worker()
        context = ActionContext(
            progress=lambda done, total: self.post_message(ActionProgress(action.verb, done, total)),
            cancelled=lambda: worker.is_cancelled,
        )
        try:
            outcome = action.run(self.source.adapter, context)
        except ActionError as exc:
            outcome = Outcome(False, str(exc))
        except Exception as exc:  # the cluster's problem, reported, never a crash of the console
            outcome = Outcome(False, f"{type(exc).__name__}: {exc}")
        if self.source.kind == "demo":  # its made-up answers ("purged 0", "1 ok") would read as real
            said = f"demo: nothing was sent, nothing changed ({action.command})"
            outcome = Outcome(outcome.ok, said, outcome.replies, {"demo": True})
        try:
            self.audit.append(
                action.verb,
                action.target,
                ok=outcome.ok,
                summary=outcome.summary,
                replies=outcome.replies,
                broker=self.source.masked_url,
                command=action.command,
                scope="; ".join(action.scope),
            )
        except OSError as exc:
            outcome.extra["audit_error"] = str(exc)
        self.post_message(ActionDone(action.verb, action.target, outcome))

    def on_action_done(self, message: ActionDone) -> None:
        self.pending_actions = max(0, self.pending_actions - 1)
        outcome = message.outcome
        self.last_outcome = message
        self.notify(
            outcome.summary,
            title=f"{message.verb} {'(demo)' if outcome.extra.get('demo') else '✓' if outcome.ok else '✗'}",
            severity="information" if outcome.ok else "error",
            timeout=6 if outcome.ok else 12,
        )
        if "audit_error" in outcome.extra:
            self.notify(f"audit log not written: {outcome.extra['audit_error']}", severity="error")
        if message.verb in ("revoke", "terminate") and outcome.ok:
            self.model.revoked_here.update(message.target.split(","))
        if message.verb == "retry" and outcome.ok and isinstance(outcome.replies, dict):
            # the name a plain retry read from the stored message, for a task the view knew without one
            self.model.learn_names([(message.target, outcome.replies.get("name"))])
        self.source.request_snapshot()
        self.refresh_screen(force=True)

    def on_action_progress(self, message: ActionProgress) -> None:
        if message.done == message.total or message.done % 10 == 0:
            self.notify(f"{message.done}/{message.total}", title=message.verb, timeout=2)


def summarize_replies(replies: list[dict[str, Any]], expected: list[str] | None = None) -> tuple[bool, str]:
    """``[{node: {"ok": …}}]`` → (all ok, one line naming errors and silent workers)."""
    answered: dict[str, Any] = {}
    for reply in replies or []:
        answered.update(reply)
    errors = {
        node: body.get("error") for node, body in answered.items() if isinstance(body, dict) and body.get("error")
    }
    silent = [w for w in (expected or []) if w not in answered]
    parts = [f"{len(answered) - len(errors)} ok"]
    if errors:
        parts.append("; ".join(f"{n}: {e}" for n, e in errors.items()))
    if silent:
        parts.append(f"no reply from {', '.join(silent)}")
    if not answered and not expected:
        parts = ["no worker replied"]
    return not errors and not silent and bool(answered or not expected), " · ".join(parts)
