"""``tqctl serve`` in headless Chromium (Debian's ``chromium``, driven by Playwright): the console
served to a browser shows a real worker on the Overview, keys switch screens, write actions are
refused in the default read-only mode, and off loopback a token is required (typed into the
login form, never on a command line).

What the browser shows is checked on the terminal output it receives over the websocket (the
bytes xterm.js draws, escape sequences removed), and a screenshot is saved next to the test's logs.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import ChildProcess
from tests.integration.servers import ready_on_a_free_port

pytest.importorskip("textual_serve")
sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (apt-get install chromium)")

ESCAPES = re.compile(rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78])")
TOKEN = "correct-horse-battery-staple-42"


class Serve(ChildProcess):
    ready_marker = "tqctl serve: the console on"


@pytest.fixture
def start_serve(broker_url: str, tmp_path: Path) -> Iterator[Callable[..., tuple[Serve, str]]]:
    started: list[Serve] = []

    def start(*args: str, env: dict[str, str] | None = None) -> tuple[Serve, str]:
        full_env = {**os.environ, "TQCTL_BROKER": broker_url, **(env or {})}

        def launch(port: int) -> Serve:
            argv = [sys.executable, "-m", "tqctl", "serve", "--port", str(port), "--state-dir", str(tmp_path), *args]
            return Serve(argv, tmp_path / f"serve-{port}.log", full_env)

        serve, port = ready_on_a_free_port(launch, 60)
        started.append(serve)
        return serve, f"http://127.0.0.1:{port}"

    yield start
    for proc in started:
        proc.close()


class BrowserConsole:
    """A Chromium page on the served console, with the terminal output it has received."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.frames: list[bytes] = []
        page.on("websocket", lambda ws: ws.on("framereceived", self._received))

    def _received(self, payload: bytes | str) -> None:
        self.frames.append(payload if isinstance(payload, bytes) else payload.encode())

    def mark(self) -> int:
        return len(self.frames)

    def text(self, since: int = 0) -> str:
        return ESCAPES.sub(b"", b"".join(self.frames[since:])).decode("utf-8", "replace")

    def wait_text(self, needle: str, since: int = 0, timeout: float = 60.0) -> None:
        for _ in range(int(timeout * 10)):
            if needle in self.text(since):
                return
            self.page.wait_for_timeout(100)  # lets Playwright deliver frames while we wait
        raise AssertionError(f"{needle!r} never shown; the browser received:\n{self.text(since)[-2000:]}")

    def press(self, key: str) -> int:
        mark = self.mark()
        self.page.keyboard.press(key)
        return mark


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def open_console(browser: Any, url: str) -> BrowserConsole:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    console = BrowserConsole(page)
    page.goto(url, wait_until="domcontentloaded")
    return console


def command_lines(pid: int) -> list[str]:
    """The command lines of ``pid`` and all its descendants (what ``ps`` shows any user)."""
    lines, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            lines.append(Path(f"/proc/{current}/cmdline").read_bytes().replace(b"\0", b" ").decode())
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        todo += [int(child) for child in children]
    return lines


def test_overview_shows_the_worker_and_keys_switch_screens(
    start_worker: Any, start_serve: Any, browser: Any, broker_url: str, tmp_path: Path
) -> None:
    start_worker("-c", "1", name="webworker")
    serve, url = start_serve()
    console = open_console(browser, url)

    console.wait_text("webworker@")  # the Overview lists the live worker
    assert "1 Overview" in console.text() and " RO " in console.text()
    console.page.screenshot(path=str(tmp_path / "serve-overview.png"))
    assert (tmp_path / "serve-overview.png").stat().st_size > 10_000

    console.page.locator(".textual-terminal").click()
    mark = console.press("2")
    console.wait_text("CONC is current/min/max", since=mark)  # the Workers screen's own line

    mark = console.press("Control+d")  # shut the worker down: refused in read-only mode
    console.wait_text("serve without --write)", since=mark)  # the notice (it wraps before "serve")
    console.page.screenshot(path=str(tmp_path / "serve-refused.png"))

    lines = command_lines(serve.pid)
    assert any(" console " in line and "--read-only" in line for line in lines)
    assert not any(broker_url in line for line in lines)  # the URL travels in the environment


def test_off_loopback_a_token_is_asked_for_in_a_form(start_serve: Any, browser: Any) -> None:
    serve, url = start_serve("--host", "0.0.0.0", "--write", env={"TQCTL_SERVE_TOKEN": TOKEN})
    assert not any(TOKEN in line for line in command_lines(serve.pid))

    for path in ("/ws", "/static/js/textual.js"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + path, timeout=30)
        assert refused.value.code == 401

    console = open_console(browser, url)
    page = console.page
    page.fill("input[name=token]", "not-the-token-at-all")
    page.click("button[type=submit]")
    assert "wrong token" in page.content()
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    console.wait_text(" RW ")  # signed in, and --write: the header says read-write
    assert TOKEN not in page.url and TOKEN not in serve.log()


def status_of(url: str, headers: dict[str, str]) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_tokenless_console_answers_its_own_page_only(start_serve: Any) -> None:
    """No other site can reach it from a visitor's browser: a name rebound to 127.0.0.1 gets 403,
    and so does a websocket opened from another origin."""
    _, url = start_serve("--demo")
    port = url.rsplit(":", 1)[1]
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
    upgrade["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
    assert status_of(url + "/", {}) == 200
    assert status_of(url + "/", {"Host": f"localhost:{port}"}) == 200
    assert status_of(url + "/", {"Host": f"rebound.example:{port}"}) == 403
    assert status_of(url + "/ws", {**upgrade, "Origin": "http://elsewhere.example"}) == 403


def test_off_loopback_without_a_token_is_refused_in_one_line(tmp_path: Path) -> None:
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TQCTL_SERVE_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "tqctl", "serve", "--host", "0.0.0.0", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "tqctl: error: listening on 0.0.0.0 needs a token: set TQCTL_SERVE_TOKEN or pass --token-file PATH"
    ]
