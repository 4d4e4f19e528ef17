"""A Redis broker whose publishes return only once replicas hold the message (``WAIT``).

Redis replicates asynchronously: a primary that acknowledges an LPUSH and dies before its
replica copied it loses the message, and a failover promotes the replica without it. With
``tqctl_publish_wait_replicas = N`` each publish is followed, on the same connection and in the
same round trip, by ``WAIT N timeout``, so ``delay()`` returns only once N replicas have it.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from engine import resp
from engine.broker.redis import RedisBroker
from engine.config import url_host
from engine.exceptions import BrokerUnavailable
from engine.protocol.task import priority_key
from engine.resp.client import read_reply


class NotReplicated(BrokerUnavailable):
    """The primary took the message but fewer replicas than asked confirmed it in time: it will
    most likely run, but a failover now could lose it (publishing again could run it twice)."""


class ReplicatedBroker(RedisBroker):
    def __init__(self, url: str, replicas: int, timeout: float, client: resp.Client | None = None) -> None:
        super().__init__(url, client)
        self.replicas = replicas
        self.wait_ms = max(int(timeout * 1000), 1)
        self._wait = _packed("WAIT", str(replicas), str(self.wait_ms))

    def publish(self, queue: str, raw: bytes, priority: int | None = None) -> None:
        """LPUSH and WAIT in one write on this thread's connection; both replies are awaited.
        Inside ``batched`` (a group's members) the message waits for the block's end, as on
        RedisBroker: then one ``publish_many``, one WAIT for all of them."""
        gathering = self._gathering.held()
        if gathering is not None:
            gathering.append((queue, raw, priority))
            return
        key = priority_key(queue, priority)
        conn = self._conns.get()
        name = key.encode()
        try:
            packed = b"*3\r\n$5\r\nLPUSH\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n%b" % (len(name), name, len(raw), raw, self._wait)
            sock, reader = conn.sock, conn.reader
            if sock is not None and reader is not None:
                replies = _push_and_wait_on(conn, sock, reader, packed)
            else:
                conn.send_packed_command([packed], check_health=False)  # connects first if need be
                replies = [read_reply(conn), read_reply(conn)]
        except (resp.ConnectionError, resp.TimeoutError, OSError):
            conn.disconnect()
            pipe = self.client.pipeline(transaction=False)  # one connection: WAIT covers this LPUSH
            pipe.lpush(key, raw)
            pipe.execute_command("WAIT", self.replicas, self.wait_ms)
            replies = pipe.execute(raise_on_error=False)
        self._check(replies, 1)

    def publish_many(self, items: Sequence[tuple[str, bytes, int | None]], chunk: int = 1000) -> None:
        pipe = self.client.pipeline(transaction=False)
        for queue, raw, priority in items:
            pipe.lpush(priority_key(queue, priority), raw)
        pipe.execute_command("WAIT", self.replicas, self.wait_ms)
        self._check(pipe.execute(raise_on_error=False), len(items))

    def _check(self, replies: list[Any], published: int) -> None:
        errors = [reply for reply in replies if isinstance(reply, resp.ResponseError)]
        if errors:
            raise errors[0]
        acked = int(replies[-1])
        if acked < self.replicas:
            raise NotReplicated(
                f"{published} message(s) taken by the primary at {url_host(self.url)} but only {acked} of "
                f"{self.replicas} replica(s) confirmed within {self.wait_ms / 1000:g} s "
                "(tqctl_publish_wait_replicas): they may be lost if the primary fails now"
            )


def _packed(*parts: str) -> bytes:
    """One command in the protocol's form (the WAIT, packed once per broker)."""
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p.encode()) for p in parts)


def _push_and_wait_on(conn: resp.Connection, sock: socket.socket, reader: Any, packed: bytes) -> list[Any]:
    """LPUSH + WAIT on the connection's socket, their two ``:N`` replies taken as they come
    (RedisBroker's direct read, for two replies: the connection's send and read wrappers were much
    of the client's time). Anything else read (an error, a reply split across reads) goes to the
    connection's hiredis reader and is parsed as any reply. A publish cut
    off mid-way (a time limit, ^C) drops the connection: it is out of step."""
    replies: list[Any] = []
    try:
        sock.sendall(packed)
        data = sock.recv(256)
        while data and len(replies) < 2:
            end = data.find(b"\r\n")
            if data[:1] != b":" or end < 0 or not data[1:end].isdigit():
                break
            replies.append(int(data[1:end]))
            data = data[end + 2 :]
            if not data and len(replies) == 1:
                data = sock.recv(256)  # WAIT answers once the replicas have it, or at its timeout
    except BaseException:
        conn.disconnect()
        raise
    if len(replies) == 2 and not data:
        return replies
    if not data and not replies:
        raise resp.ConnectionError("Connection closed by server.")
    if data:
        reader.feed(data)
    return replies + [read_reply(conn) for _ in range(2 - len(replies))]
