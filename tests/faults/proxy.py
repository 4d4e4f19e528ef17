"""The TCP proxy the broker-stall experiments put between workers and a ``FaultServer(tcp=True)``:
faults of the connection rather than of the server."""

from __future__ import annotations

import socket
import struct
import threading


class Proxy:
    """A TCP proxy in front of the broker. ``reset()`` kills every open connection with an RST;
    ``blackhole`` (while True) forwards requests but drops the server's replies, so commands run on
    the server while their callers never hear back: what a connection lost mid-reply looks like."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.blackhole = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, reply: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if reply and self.blackhole:
                    continue
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            _rst(sock)

    def reset(self) -> int:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            _rst(client)
            _rst(server)
        return len(pairs)

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept(); close() alone does not
        except OSError:
            pass
        self._listener.close()
        self._acceptor.join(5)
        self.reset()


def _rst(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
