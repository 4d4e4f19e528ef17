"""Every console action names a real ``tqctl`` command that does the same (README: every console
action is also a scripted command): each one's line parses with the CLI, flags and values checked
by the same callbacks a user's line meets."""

from __future__ import annotations

import shlex
import uuid
from typing import Any

import pytest
import typer

from tqctl.cli import app
from tqctl.tui import verbs
from tqctl.tui.actions import Action

ID, OTHER = str(uuid.uuid4()), str(uuid.uuid4())
W = ["w1@host", "w2@host"]
URL = "redis://:****@cache:6379/0"
ACTIONS: dict[str, tuple[Action, str]] = {
    "pool_grow": (verbs.pool_resize(W, 2, True, URL), "control"),
    "pool_shrink": (verbs.pool_resize(W, 1, False, None), "control"),
    "autoscale": (verbs.autoscale(W, 8, 2, None), "control"),
    "add_consumer": (verbs.add_consumer(W, "mail", None), "control"),
    "cancel_consumer": (verbs.cancel_consumer(W, "mail", 3, [], None), "control"),
    "drain": (verbs.drain(W, 1, 2, [], None), "control"),
    "shutdown": (verbs.shutdown(W, 1, [], None), "control"),
    "enable_events": (verbs.enable_events(W, None), "control"),
    "revoke": (verbs.revoke([ID, OTHER], "2 tasks", W, None), "revoke"),
    "terminate": (verbs.revoke([ID], "1 task", W, None, terminate=True, signal="SIGKILL"), "revoke"),
    "retry": (verbs.retry(ID, "shop.pay", None), "retry"),
    "retry_edited": (verbs.retry_edited(ID, "shop.pay", [1, "x y"], {"k": None}, "mail", URL), "call"),
    "retry_group": (verbs.retry_group("fp123", "shop.pay: ValueError", [ID, OTHER], 1, 5.0, None), "retry"),
    "delete_group": (verbs.delete_failures([ID, OTHER], "shop.pay", "fp123", None), "discard"),
    "delete_failures": (verbs.delete_failures([ID, OTHER], "shop.pay", None, None), "discard"),
    "purge": (verbs.purge("mail", 3, [], None), "purge"),
    "eta_run_now": (verbs.run_eta_now(ID, "shop.pay", None), "run-now"),
    "beat_run_now": (verbs.beat_run_now("nightly report", "proj.app", None), "beat"),
    "beat_disable": (verbs.beat_enable("nightly", False, "proj.app", None), "beat"),
    "dead_requeue": (verbs.dead_letters([ID], True, "1 letter", None), "dead"),
    "dead_delete": (verbs.dead_letters([ID], False, "1 letter", None), "dead"),
}


def parse(line: str) -> list[str]:
    """The command path the line reaches, parsed (and its values checked) as the CLI would."""
    words = shlex.split(line)
    assert words[0] == "tqctl"
    command: Any = typer.main.get_command(app)  # (Typer's own copy of click)
    ctx = command.make_context("tqctl", words[1:])
    path = []
    while hasattr(command, "resolve_command"):  # a group: on to its subcommand
        name, sub, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        assert sub is not None and name is not None
        path.append(name)
        ctx = sub.make_context(name, rest, parent=ctx)
        command = sub
    return path


@pytest.mark.parametrize("key", sorted(ACTIONS))
def test_each_console_action_names_a_command_the_cli_takes(key: str) -> None:
    action, first = ACTIONS[key]
    path = parse(action.command)
    assert path[0] == first, action.command


def test_the_delete_actions_name_what_they_delete() -> None:
    """The group delete picks the same group; the delete of marked failures names each of them."""
    assert "--group fp123" in ACTIONS["delete_group"][0].command
    assert f"{ID} {OTHER}" in ACTIONS["delete_failures"][0].command
    assert "--group fp123" in ACTIONS["retry_group"][0].command
