"""Buffered socket reads for a consuming py-amqp connection.

py-amqp reads each frame with three ``recv`` calls sized to the exact bytes it wants (header,
payload, end octet), and a delivery is three frames: nine system calls a task, a large share of
a busy worker's consumer on a loaded machine. Reading up to ``CHUNK`` bytes at a time serves
most frames from memory instead. The buffer stays ``transport._read_buffer``, which py-amqp's own
``read_frame`` already rolls back into on a timeout, so a frame cut by a timeout is not lost.
"""

from __future__ import annotations

import errno
import select
from typing import Any

# Bytes asked for per recv: several deliveries, while the copy of the rest stays small.
CHUNK = 16384
RETRY = (errno.EAGAIN, errno.EINTR)


def buffer_reads(connection: Any) -> None:
    """Give a connected py-amqp ``Connection``'s plain TCP transport buffered reads (TLS
    transports read through their own buffer and are left alone)."""
    transport = getattr(connection, "transport", None)
    if transport is None or type(transport).__name__ != "TCPTransport" or getattr(transport, "sock", None) is None:
        return
    recv = transport.sock.recv

    def read(n: int, initial: bool = False) -> bytes:
        rbuf = transport._read_buffer
        try:
            while len(rbuf) < n:
                try:
                    chunk = recv(max(n - len(rbuf), CHUNK))
                except OSError as exc:
                    if exc.errno in RETRY:
                        if initial and transport.raise_on_initial_eintr:
                            raise TimeoutError() from None
                        continue
                    raise
                if not chunk:
                    raise OSError("Server unexpectedly closed connection")
                rbuf += chunk
        except BaseException:
            transport._read_buffer = rbuf
            raise
        result, transport._read_buffer = rbuf[:n], rbuf[n:]
        return result

    transport._read = read


def pending(connection: Any) -> bool:
    """Whether more is already here to read (buffered, or waiting on the socket) without blocking."""
    transport = getattr(connection, "transport", None)
    if transport is None:
        return False
    if getattr(transport, "_read_buffer", b""):
        return True
    sock = getattr(transport, "sock", None)
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(readable)
