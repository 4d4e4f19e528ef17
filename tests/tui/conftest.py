"""Console tests: the integration fixtures (real server, real worker processes) plus helpers to
drive a ``TqctlApp`` with Textual's Pilot from plain (sync) pytest tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.integration.conftest import broker_url, ledger, shop, start_worker  # noqa: F401 - reused fixtures
from tqctl.tui.app import TqctlApp
from tqctl.tui.audit import AuditLog
from tqctl.tui.feed import LiveSource


def live_app(url: str, state_dir: Path, *, read_only: bool = False, app: Any = None, app_spec: str | None = None,
             owned: Any = None) -> TqctlApp:
    """A console on a real server, polling fast so tests do not wait long."""
    source = LiveSource(url, app, app_spec, batch_interval=0.1, snapshot_interval=0.5, slow_every=1)
    return TqctlApp(source, read_only=read_only, audit=AuditLog.in_state_dir(state_dir), owned=owned, tick=0.2,
                    still=True)


def drive(app: TqctlApp, scenario: Callable[[Pilot], Awaitable[None]], size: tuple[int, int] = (120, 40),
          timeout: float = 90.0) -> None:
    """Run ``scenario`` against the headless app; notifications are recorded on ``app.seen_notes``."""
    notes: list[str] = []
    original = app.notify

    def notify(message: str, *args: Any, **kwargs: Any) -> None:
        notes.append(f"{kwargs.get('title') or ''}: {message}")
        original(message, *args, **kwargs)
    app.notify = notify  # type: ignore[method-assign]
    app.seen_notes = notes  # type: ignore[attr-defined]

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            try:
                await asyncio.wait_for(scenario(pilot), timeout)
            except (AssertionError, TimeoutError) as exc:
                raise AssertionError(f"{exc}\nnotifications: {notes}\nscreen: {app.screen!r}") from exc
    asyncio.run(main())


async def wait_for(pilot: Pilot, predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await pilot.pause(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def press(pilot: Pilot, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await pilot.pause()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path
