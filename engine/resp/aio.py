"""The asyncio side of the client: one connection that sends a batch and reads its replies,
and a subscriber. Used by ``engine.aio`` (``adelay``, ``aget``, the asyncio pool's stores)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from engine.resp.connection import Settings, connect_error, handshake, new_reader, pack, tls_context
from engine.resp.errors import AuthenticationError, ConnectionError, RedisError, ResponseError


class AsyncConnection:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stream: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader: Any = None

    async def connect(self) -> None:
        if self._writer is not None:
            return
        s = self.settings
        try:
            if s.path:
                opening = asyncio.open_unix_connection(s.path)
            else:
                tls = tls_context(s) if s.tls is not None else None
                opening = asyncio.open_connection(s.host, s.port, ssl=tls, server_hostname=s.host if tls else None)
            self._stream, self._writer = await asyncio.wait_for(opening, s.socket_connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise ConnectionError(connect_error(s, exc if isinstance(exc, OSError) else TimeoutError())) from None
        self._reader = new_reader(s)
        commands = handshake(s)
        if commands:
            for command, reply in zip(commands, await self._exchange(commands), strict=True):
                if isinstance(reply, ResponseError):
                    await self.aclose()
                    raise AuthenticationError(str(reply)) if command[0] == "AUTH" else reply

    async def execute(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Replies to ``commands`` sent in one write, an error reply in its place (not raised)."""
        await self.connect()
        try:
            return await self._exchange(commands)
        except BaseException:
            await self.aclose()  # cut off or lost: the stream is out of step
            raise

    async def _exchange(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        await self.send(b"".join(pack(c) for c in commands))
        return [await self.read() for _ in commands]

    async def send(self, packed: bytes) -> None:
        writer = self._writer
        if writer is None:
            raise ConnectionError("Connection closed.")
        try:
            writer.write(packed)
            await writer.drain()
        except OSError as exc:
            await self.aclose()
            raise ConnectionError(f"Error while writing to {self.settings.where()}: {exc}") from None

    async def read(self) -> Any:
        while True:
            reader, stream = self._reader, self._stream
            if reader is None or stream is None:
                raise ConnectionError("Connection closed by server.")
            reply = reader.gets()
            if reply is not False:
                if isinstance(reply, RedisError) and not isinstance(reply, ResponseError):
                    raise reply
                return reply
            try:
                data = await stream.read(self.settings.read_size)
            except OSError as exc:
                await self.aclose()
                raise ConnectionError(f"Error while reading from {self.settings.where()}: {exc}") from None
            if not data:
                await self.aclose()
                raise ConnectionError("Connection closed by server.")
            reader.feed(data)

    async def aclose(self) -> None:
        writer, self._writer, self._stream, self._reader = self._writer, None, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, RuntimeError):
                pass


class AsyncClient:
    """Batches on one connection (the caller sends one batch at a time), retried once on a new
    connection when the old one was lost before the batch went out."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._conn = AsyncConnection(settings)

    async def execute(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        try:
            return await self._conn.execute(commands)
        except ConnectionError:
            return await self._conn.execute(commands)

    def pubsub(self) -> AsyncPubSub:
        return AsyncPubSub(self.settings)

    async def aclose(self) -> None:
        await self._conn.aclose()


class AsyncPubSub:
    """A subscriber: its subscriptions made again on a new connection after a lost one."""

    def __init__(self, settings: Settings) -> None:
        self._conn = AsyncConnection(settings)
        self.channels: set[str] = set()

    async def subscribe(self, *names: str) -> None:
        self.channels.update(names)
        await self._conn.connect()
        await self._conn.send(pack(("SUBSCRIBE", *names)))

    async def unsubscribe(self, *names: str) -> None:
        self.channels.difference_update(names)
        if self._conn._writer is not None:
            await self._conn.send(pack(("UNSUBSCRIBE", *names)))

    async def get_message(self, ignore_subscribe_messages: bool = True, timeout: float = 1.0) -> dict[str, Any] | None:
        if self._conn._writer is None:
            if not self.channels:
                await asyncio.sleep(timeout)
                return None
            await self._conn.connect()
            await self._conn.send(pack(("SUBSCRIBE", *self.channels)))
        try:
            reply = await asyncio.wait_for(self._conn.read(), timeout)
        except asyncio.TimeoutError:
            return None
        except ConnectionError:
            await self._conn.aclose()
            return None
        kind = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if kind != "message":
            return (
                None
                if ignore_subscribe_messages or kind == "pong"
                else {"type": kind, "channel": reply[1], "data": reply[2]}
            )
        return {"type": kind, "pattern": None, "channel": reply[1], "data": reply[2]}

    async def aclose(self) -> None:
        self.channels.clear()
        await self._conn.aclose()
