"""The bundled broker on loopback TCP survives a port taken between choosing it and binding it.

Before: ``_free_port`` closed its socket before the server bound the port, and a port another
program took in between left a server that logged "Address already in use" and exited. The starter
then waited out its 10 s for a PING and failed; or, when the port was held by another Redis-like
server, took that server's PING for its own and recorded another program's server as the broker.
Now a start that finds its port taken is tried again on a fresh one (3 starts in all, then one
line), and ready means the answering server is the process we started. Each test holds a real
listener on the port the broker is made to choose first.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine import bundled
from tests.integration.servers import Server, free_port, valkey_binary

pytestmark = pytest.mark.integration


@pytest.fixture
def held_socket() -> Iterator[int]:
    """A port a program holds: bound and listening, never answering."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


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


@pytest.mark.parametrize("holder", ["held_socket", "held_by_a_server"])
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
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, held_socket: int
) -> None:
    """Through ``tqctl broker start``, on a state folder too long for a unix socket (so TCP)."""
    from tqctl.commands.broker import app

    picks(monkeypatch, held_socket, times=3)  # every start (bundled.START_TRIES)
    folder = tmp_path / ("x" * 100) / ".tqctl"
    assert not bundled.socket_path_fits(folder / "redis.sock")
    try:
        result = CliRunner().invoke(app, ["start"], env={"TQCTL_STATE_DIR": str(folder)})
    finally:
        bundled.stop(folder)
    lines = result.output.strip().splitlines()
    assert result.exit_code != 0 and "Traceback" not in result.output and len(lines) == 1, result.output
    assert "another program took each of the 3 loopback ports" in lines[0]
    assert f"(last: {held_socket})" in lines[0]
