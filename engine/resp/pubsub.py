"""Subscriptions on a connection of their own: messages read as they come, the subscriptions made
again on a new connection when the old one is lost (within the client's retry window)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from engine.resp.connection import Connection, pack
from engine.resp.errors import PubSubError

if TYPE_CHECKING:
    from engine.resp.client import Client

T = TypeVar("T")
CONFIRMATIONS = frozenset({"subscribe", "psubscribe", "unsubscribe", "punsubscribe"})
HEALTH_WORD = b"tqctl-health-check"
HEALTH_PING = pack(("PING", HEALTH_WORD))


class PubSub:
    def __init__(self, client: Client, ignore_subscribe_messages: bool = False) -> None:
        self.client = client
        self.ignore_subscribe_messages = ignore_subscribe_messages
        self.connection: Connection | None = None
        self.channels: set[bytes] = set()
        self.patterns: set[bytes] = set()

    @property
    def subscribed(self) -> bool:
        return bool(self.channels or self.patterns)

    # -- subscribing --------------------------------------------------------------------------
    def subscribe(self, *channels: str | bytes) -> None:
        names = [_bytes(c) for c in channels]
        self._add(self.channels, names, pack(("SUBSCRIBE", *names)))

    def psubscribe(self, *patterns: str | bytes) -> None:
        names = [_bytes(p) for p in patterns]
        self._add(self.patterns, names, pack(("PSUBSCRIBE", *names)))

    def _add(self, into: set[bytes], names: list[bytes], command: bytes) -> None:
        """Record and send; a connection opened by this call subscribes to all it records."""
        opened = self.connection is None or self.connection.sock is None
        into.update(names)
        if opened:
            self._run(lambda conn: None)
        else:
            self._run(lambda conn: conn.send_packed_command(command, check_health=False))

    def unsubscribe(self, *channels: str | bytes) -> None:
        names = [_bytes(c) for c in channels] or list(self.channels)
        self.channels.difference_update(names)
        if self.connection is not None:
            self._run(lambda conn: conn.send_packed_command(pack(("UNSUBSCRIBE", *names)), check_health=False))

    def punsubscribe(self, *patterns: str | bytes) -> None:
        names = [_bytes(p) for p in patterns] or list(self.patterns)
        self.patterns.difference_update(names)
        if self.connection is not None:
            self._run(lambda conn: conn.send_packed_command(pack(("PUNSUBSCRIBE", *names)), check_health=False))

    def _connect(self) -> Connection:
        """This subscriber's connection, opened (and its subscriptions made) if it is not."""
        conn = self.connection
        if conn is None:
            conn = self.connection = self.client.connection()
        if conn.sock is None:
            conn.connect()
            again = b""
            if self.channels:
                again += pack(("SUBSCRIBE", *self.channels))
            if self.patterns:
                again += pack(("PSUBSCRIBE", *self.patterns))
            if again:
                conn.send_packed_command(again, check_health=False)
        return conn

    def _run(self, step: Callable[[Connection], T]) -> T:
        def failed(_: BaseException) -> None:
            if self.connection is not None:
                self.connection.disconnect()

        return self.client.retry.call(lambda: step(self._connect()), failed)

    # -- reading ------------------------------------------------------------------------------
    def get_message(
        self, ignore_subscribe_messages: bool = False, timeout: float | None = 0.0
    ) -> dict[str, Any] | None:
        """The next message, or None if none came within ``timeout`` seconds (None: wait)."""
        if not self.subscribed and self.connection is None:
            if timeout:
                time.sleep(timeout)
            return None
        ignore = ignore_subscribe_messages or self.ignore_subscribe_messages
        end = None if timeout is None else time.monotonic() + timeout
        while True:  # past health-check answers and ignored confirmations, within the timeout
            reply = self._run(lambda conn: self._read(conn, _left(end)))
            if reply is None:
                return None
            message = self._message(reply, ignore)
            if message is not None:
                return message

    def _read(self, conn: Connection, timeout: float | None) -> Any:
        interval = conn.settings.health_check_interval
        if interval and time.monotonic() > conn.next_health_check:
            conn.send_packed_command(HEALTH_PING, check_health=False)  # finds a silently dead socket
            conn.next_health_check = time.monotonic() + interval
        if timeout is not None and not conn.can_read(timeout):
            return None
        return conn.read_response()

    def _message(self, reply: Any, ignore_confirmations: bool) -> dict[str, Any] | None:
        if reply in (HEALTH_WORD, b"PONG"):  # a health PING sent while not (yet) subscribed
            return None
        if not isinstance(reply, list) or not reply:
            raise PubSubError(f"unexpected reply on a subscription: {reply!r}")
        kind = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if kind == "pmessage":
            return {"type": kind, "pattern": reply[1], "channel": reply[2], "data": reply[3]}
        if kind == "pong" or (kind in CONFIRMATIONS and ignore_confirmations):
            return None
        return {"type": kind, "pattern": None, "channel": reply[1], "data": reply[2] if len(reply) > 2 else None}

    def listen(self) -> Iterator[dict[str, Any]]:
        while self.subscribed:
            message = self.get_message(timeout=None)
            if message is not None:
                yield message

    def close(self) -> None:
        conn, self.connection = self.connection, None
        self.channels.clear()
        self.patterns.clear()
        if conn is not None:
            conn.disconnect()

    reset = close

    def __enter__(self) -> PubSub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _left(end: float | None) -> float | None:
    return None if end is None else max(end - time.monotonic(), 0.0)


def _bytes(name: str | bytes) -> bytes:
    return name.encode() if isinstance(name, str) else name
