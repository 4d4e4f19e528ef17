"""The server harnesses survive a port taken between choosing it and binding it.

Before: a free port was chosen by binding and closing a socket, and another process (under xdist:
another worker's Redis, RabbitMQ or epmd, or a client) could bind it first; the server then exited
(or, RabbitMQ's TLS listener, was silently missing) and every test on that fixture errored at setup
(31 in one CI run). A node's five ports could also come out equal. Now a first start on a taken
port is tried again on fresh ports (3 starts in all) and a node's ports are chosen together.
Each test holds a real listening socket on the port the harness is made to choose first.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from types import SimpleNamespace

import amqp
import pytest

from tests.integration import rabbitmq as rabbitmq_module
from tests.integration import servers
from tests.integration.rabbitmq import RabbitMQ
from tests.integration.servers import PortPicker, Server, free_ports, make_certs, tls_binary, valkey_binary

pytestmark = pytest.mark.integration


@pytest.fixture
def held(held_port: int) -> int:
    """A port another process's server holds (``held_port``), by the name these tests use."""
    return held_port


def held_first(port: int, position: int = 0, times: int = 1) -> PortPicker:
    """A picker whose first ``times`` picks put the held ``port`` at ``position``."""
    calls = [0]

    def pick(count: int) -> list[int]:
        ports = free_ports(count)
        calls[0] += 1
        if calls[0] <= times:
            ports[position] = port
        return ports

    return pick


def test_a_valkey_server_on_a_taken_port_comes_up_on_a_fresh_one(tmp_path: Path, held: int) -> None:
    server = Server(tmp_path / "v", held, [], valkey_binary()).start()
    try:
        assert server.port != held and server.client().ping()
        assert "Address already in use" in server.log()  # the first start did meet the held port
        server.kill()
        server.start()  # a restart keeps the port its clients know
        assert server.client().ping()
    finally:
        server.kill()


def test_a_sentinel_on_a_taken_port_comes_up_on_a_fresh_one(tmp_path: Path, held: int) -> None:
    lines = [f"sentinel monitor m 127.0.0.1 {free_ports(1)[0]} 2"]  # a primary need not be up
    sentinel = Server(tmp_path / "s", held, lines, valkey_binary(), sentinel=True).start()
    try:
        assert sentinel.port != held and sentinel.client().sentinel_master("m")["name"] == "m"
    finally:
        sentinel.kill()


def test_a_tls_server_on_a_taken_tls_port_moves_its_tls_port(tmp_path: Path, held: int) -> None:
    binary = tls_binary()
    assert binary is not None, "Debian's redis-server (.ci/run installs it)"
    certs = make_certs(tmp_path / "pki")
    lines = ["port 0", f"tls-port {held}", f"tls-cert-file {certs['server_cert']}"]
    lines += [f"tls-key-file {certs['server_key']}", f"tls-ca-cert-file {certs['ca']}", "tls-auth-clients no"]
    server = Server(tmp_path / "tls", held, lines, binary).start()
    try:
        assert server.port != held and f"tls-port {server.port}" in server.lines
        assert server.client(ssl=True, ssl_ca_certs=certs["ca"]).ping()
    finally:
        server.kill()


def test_a_server_gives_up_after_three_taken_ports_in_one_line(tmp_path: Path, held: int) -> None:
    server = Server(tmp_path / "v", held, [], valkey_binary(), pick_ports=held_first(held, times=99))
    with pytest.raises(RuntimeError) as caught:
        server.start()
    assert "found its port taken on 3 start(s)" in str(caught.value) and "\n" not in str(caught.value)


def test_a_node_chooses_five_distinct_ports_even_from_a_kernel_that_reuses_a_closed_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel may hand the port a closed socket had to the next bind: 14 nodes in 20,000 got a
    repeated port on this machine. Modelled here by a socket whose bind(0) takes the lowest free."""
    bound: set[int] = set()

    class ReusingSocket:
        def __enter__(self) -> ReusingSocket:
            return self

        def __exit__(self, *exc: object) -> None:
            bound.discard(self.port)

        def bind(self, address: tuple[str, int]) -> None:
            self.port = min(set(range(40000, 40010)) - bound)
            bound.add(self.port)

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(servers, "socket", SimpleNamespace(socket=ReusingSocket))
    node = RabbitMQ(tmp_path)
    ports = [node.port, node.dist_port, node.epmd_port, node.tls_port, node.api_port]
    assert len(set(ports)) == 5, ports


@pytest.mark.parametrize("position", [0, 1, 3], ids=["amqp", "dist", "tls"])
def test_a_rabbitmq_node_on_a_taken_port_comes_up_on_fresh_ones(tmp_path: Path, held: int, position: int) -> None:
    """Positions in ``rabbitmq.PORTS``: the AMQP listener (the node exits), the Erlang distribution
    port (it exits before booting), the TLS listener (the node booted on without it)."""
    if not rabbitmq_module.available():
        pytest.skip("Debian's rabbitmq-server is not installed")
    certs = make_certs(tmp_path / "certs")
    node = RabbitMQ(tmp_path / "node", tls=certs, pick_ports=held_first(held, position))
    try:
        assert getattr(node, rabbitmq_module.PORTS[position]) == held  # the first start met the held port
        node.start()
        assert held not in (node.port, node.dist_port, node.epmd_port, node.tls_port, node.api_port)
        if position == 1:  # the failed boot's crash dump is in the node's folder, not the checkout
            assert (tmp_path / "node" / "erl_crash.dump").exists()
        conn = amqp.Connection(f"127.0.0.1:{node.port}", userid="guest", password="guest", connect_timeout=5)
        conn.connect()
        conn.close()
        context = ssl.create_default_context(cafile=certs["ca"])
        with socket.create_connection(("127.0.0.1", node.tls_port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                pass  # our node's TLS listener completed a handshake
    finally:
        node.close()
