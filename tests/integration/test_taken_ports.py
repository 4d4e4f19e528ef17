"""Servers that pick a free port and close it survive the port being taken before they bind it.

Before: the port was chosen by binding and closing a socket, and a port another program took in
between left a server that logged "Address already in use" and exited.
* The bundled broker on loopback TCP then waited out its 10 s for a PING and failed; or, when the
  port was held by another Redis-like server, took that server's PING for its own and recorded
  another program's server as the broker.
* The fault experiments' ``FaultServer(tcp=True)`` likewise waited 15 s, or took the other server
  for its own; the tests' web servers (``tqctl serve``, Flower, Django's runserver) errored.
Now a first start that finds its port taken is tried again on a fresh one (3 starts in all, then
one line), and ready means the process we started says (or, the broker, shows) it listens. Each
test holds a real listener on the port the starter is made to choose first.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine import bundled
from tests.faults import harness as faults
from tests.integration.harness import ChildProcess
from tests.integration.servers import Server, free_port, free_ports, ready_on_a_free_port, valkey_binary

pytestmark = pytest.mark.integration


@pytest.fixture
def held_by_a_server(tmp_path: Path) -> Iterator[int]:
    """A port another Redis-compatible server listens on: it answers PING as ours would."""
    other = Server(tmp_path / "other", free_port(), [], valkey_binary()).start()
    try:
        yield other.port
    finally:
        other.kill()


def picks(monkeypatch: pytest.MonkeyPatch, held: int, times: int) -> list[int]:
    """Makes the broker's first ``times`` picks the held port; returns every port it picked."""
    picked: list[int] = []

    def pick() -> int:
        picked.append(held if len(picked) < times else free_port())
        return picked[-1]

    monkeypatch.setattr(bundled, "_free_port", pick)
    return picked


def process_id(url: str) -> int:
    with bundled.client_for(url) as client:
        return int(client.info("server")["process_id"])


@pytest.mark.parametrize("holder", ["held_port", "held_by_a_server"])
def test_a_taken_port_moves_the_bundled_server_to_a_fresh_one(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, holder: str
) -> None:
    held = int(request.getfixturevalue(holder))
    picked = picks(monkeypatch, held, times=1)
    with bundled.start_private(tmp_path / "mine", unix_socket=False) as server:
        assert picked[0] == held and len(picked) == 2
        assert server.url == f"redis://127.0.0.1:{picked[1]}/0"
        assert process_id(server.url) == server.pid  # our server answers, not the holder
    if holder == "held_by_a_server":
        assert process_id(f"redis://127.0.0.1:{held}/0") != server.pid  # the other server is untouched


def test_a_port_taken_on_every_start_is_one_line_and_a_failed_exit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, held_port: int
) -> None:
    """Through ``tqctl broker start``, on a state folder too long for a unix socket (so TCP)."""
    from tqctl.commands.broker import app

    picks(monkeypatch, held_port, times=3)  # every start (bundled.START_TRIES)
    folder = tmp_path / ("x" * 100) / ".tqctl"
    assert not bundled.socket_path_fits(folder / "redis.sock")
    try:
        result = CliRunner().invoke(app, ["start"], env={"TQCTL_STATE_DIR": str(folder)})
    finally:
        bundled.stop(folder)
    lines = result.output.strip().splitlines()
    assert result.exit_code != 0 and "Traceback" not in result.output and len(lines) == 1, result.output
    assert "another program took each of the 3 loopback ports" in lines[0]
    assert f"(last: {held_port})" in lines[0]


@pytest.mark.parametrize("holder", ["held_port", "held_by_a_server"])
def test_a_fault_server_on_a_taken_port_comes_up_on_a_fresh_one(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, holder: str
) -> None:
    held = int(request.getfixturevalue(holder))
    ports = iter([held, free_port()])
    monkeypatch.setattr(faults, "free_port", lambda: next(ports))
    server = faults.FaultServer(tmp_path / "fault", tcp=True)
    try:
        server.start(timeout=10)
        assert server.url != f"redis://127.0.0.1:{held}/0"
        assert process_id(server.url) == server.pid
        server.kill()
        server.start()  # a restart keeps the address its clients know
        assert process_id(server.url) == server.pid
    finally:
        server.kill()


class HttpServer(ChildProcess):
    """``python -m http.server``: a web server child that exits on a taken port, as ours do."""

    ready_marker = "Serving HTTP"

    def __init__(self, port: int, directory: Path) -> None:
        argv = [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", str(port)]
        super().__init__(argv, directory / f"http-{port}.log", {"PATH": "/usr/bin:/bin"})


def test_a_web_server_child_on_a_taken_port_is_launched_again(tmp_path: Path, held_port: int) -> None:
    picked: list[int] = []

    def pick(count: int) -> list[int]:
        picked.append(held_port if not picked else free_ports(count)[0])
        return picked[-1:]

    child, port = ready_on_a_free_port(lambda port: HttpServer(port, tmp_path), 30, pick)
    try:
        assert picked[0] == held_port and port == picked[1] and child.proc.poll() is None
        assert "already in use" in (tmp_path / f"http-{held_port}.log").read_text()
    finally:
        child.close()
