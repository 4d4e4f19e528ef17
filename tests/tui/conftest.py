"""Console tests: the integration fixtures (real server, real worker processes) plus helpers to
drive a ``TqctlApp`` with Textual's Pilot from plain (sync) pytest tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from textual.pilot import Pilot

from engine.broker.inspect import is_amqp
from tests.integration.conftest import (  # noqa: F401 - reused fixtures
    backend_url,
    broker_url,
    ledger,
    shop,
    start_worker,
    transport,
    transport_env,
)
from tests.integration.rabbitmq import amqp_url, rabbitmq  # noqa: F401 - broker_url's on the AMQP run
from tqctl.tui.app import TqctlApp
from tqctl.tui.audit import AuditLog
from tqctl.tui.feed import LiveSource


def live_app(
    url: str,
    state_dir: Path,
    *,
    read_only: bool = False,
    app: Any = None,
    app_spec: str | None = None,
    owned: Any = None,
    slow_every: int = 1,
) -> TqctlApp:
    """A console on a real server, polling fast so tests do not wait long. ``slow_every``: the failure
    inbox (and the other slow reads) every that many polls, and after each action."""
    source = LiveSource(url, app, app_spec, batch_interval=0.1, snapshot_interval=0.5, slow_every=slow_every)
    return TqctlApp(
        source, read_only=read_only, audit=AuditLog.in_state_dir(state_dir), owned=owned, tick=0.2, still=True
    )


def drive(
    app: TqctlApp,
    scenario: Callable[[Pilot], Awaitable[None]],
    size: tuple[int, int] = (120, 40),
    timeout: float = 90.0,
) -> None:
    """Run ``scenario`` against the headless app; notifications are recorded on ``app.seen_notes``."""
    notes = record_notes(app)

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            try:
                await asyncio.wait_for(scenario(pilot), timeout)
            except (AssertionError, TimeoutError) as exc:
                raise AssertionError(f"{exc}\nnotifications: {notes}\nscreen: {app.screen!r}") from exc

    asyncio.run(main())


def record_notes(app: TqctlApp) -> list[str]:
    """Every notification the app shows from now on, as "title: message", also on ``app.seen_notes``."""
    notes: list[str] = []
    original = app.notify

    def notify(message: str, *args: Any, **kwargs: Any) -> None:
        notes.append(f"{kwargs.get('title') or ''}: {message}")
        original(message, *args, **kwargs)

    app.notify = notify  # type: ignore[method-assign]
    app.seen_notes = notes  # type: ignore[attr-defined]
    return notes


async def wait_for(
    pilot: Pilot, predicate: Callable[[], Any], what: str, timeout: float = 20.0, show: Callable[[], Any] | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await pilot.pause(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last: {show()!r})" if show else ""))


async def press(pilot: Pilot, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await pilot.pause()


@pytest.fixture(autouse=True)
def console_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A console on a test's broker finds the cluster's stored state (history, failures, revokes)
    as a user's would: through TQCTL_BACKEND on AMQP (the Redis backend), the broker on Redis.
    The CLI processes the console starts (copied commands) inherit it."""
    if "transport" not in request.fixturenames:
        return
    monkeypatch.delenv("TQCTL_BACKEND", raising=False)
    for key, value in request.getfixturevalue("transport_env").items():
        monkeypatch.setenv(key, value)


def push_raw(url: str, queue: str, body: bytes) -> None:
    """Put bytes on ``queue`` as a foreign producer would (what no client of ours would send)."""
    if not is_amqp(url):
        from engine.bundled import client_for

        with client_for(url) as client:
            client.lpush(queue, body)
        return
    import amqp

    from engine.broker.amqp import open_connection

    conn = open_connection(url)
    try:
        conn.channel().basic_publish(amqp.Message(body, delivery_mode=2), exchange="", routing_key=queue)
    finally:
        conn.release()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


def cell_text(cell: Any) -> str:
    return cell.plain if hasattr(cell, "plain") else str(cell)


def row_text(table: Any, key: str) -> str:
    """What one table row shows, as plain text (empty when the row is not there)."""
    if key not in getattr(table, "row_keys", []):
        return ""
    return " ".join(cell_text(c) for c in table.get_row(key))


def shown_rows(table: Any) -> list[str]:
    return [row_text(table, key) for key in table.row_keys]


def audit_lines(state_dir: Path) -> list[dict[str, Any]]:
    import json

    path = state_dir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def wait_screen(pilot: Pilot, kind: type, what: str | None = None) -> Any:
    return await wait_for(pilot, lambda: isinstance(pilot.app.screen, kind) and pilot.app.screen, what or kind.__name__)


async def outcome(pilot: Pilot, verb: str, timeout: float = 20.0) -> Any:
    """The answer to the last action named ``verb`` (waits for it); fails when it was not ok."""
    done = await wait_for(
        pilot, lambda: (o := cast(Any, pilot.app).last_outcome) and o.verb == verb and o, f"{verb} to finish", timeout
    )
    assert done.outcome.ok, done.outcome.summary
    return done


def cell(table: Any, key: str, column: str) -> str:
    """The text of one cell (by row key and column key); empty when not shown."""
    try:
        return cell_text(table.get_cell(key, column))
    except Exception:  # row or column not there (yet)
        return ""


def texts(node: Any) -> str:
    """Every Static/Label text under ``node``, joined: what the user reads there (tables aside)."""
    from textual.widgets import Static

    return "\n".join(str(w.render()) for w in node.query(Static))


# -- a real terminal (tmux) ------------------------------------------------------------------------
class Terminal:
    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args[:3])}… exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "main", *keys)

    def screen(self, escapes: bool = False) -> str:
        return self.tmux("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "main")

    def wait(self, predicate: Callable[[str], bool], what: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; the screen:\n{text}")


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    # A server of its own per test: ``kill-server`` returns before the last test's server has
    # gone, and a new session on the same socket could meet it (CI12: new-session exited 1).
    term = Terminal(f"tqctl-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    rc = tmp_path / "bashrc"
    rc.write_text("PS1='$ '\n")
    term.tmux(
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-s",
        "main",
        "-x",
        "80",
        "-y",
        "24",
        f"bash --rcfile {rc} --noprofile -i",
    )
    term.tmux("set-option", "-g", "status", "off")
    try:
        yield term
    finally:
        subprocess.run(["tmux", "-L", term.socket, "kill-server"], capture_output=True)
