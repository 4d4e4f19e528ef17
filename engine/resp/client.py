"""The client: commands over a pool of connections, retried across a lost connection; pipelines
(one round trip, ``MULTI``/``EXEC`` when asked) and Lua scripts by digest."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from engine.resp.commands import Iterating, Shape
from engine.resp.connection import Connection, pack
from engine.resp.errors import (
    AuthenticationError,
    ConnectionError,
    NoScriptError,
    RedisError,
    ResponseError,
    TimeoutError,
    WatchError,
)
from engine.resp.pool import Pool

if TYPE_CHECKING:
    from engine.resp.pubsub import PubSub

T = TypeVar("T")
RETRIED = (ConnectionError, TimeoutError)


class Retry:
    """How often a command is sent again after its connection failed, and how long between:
    ``base`` doubling (with jitter) up to ``cap``. The default spans about three seconds, enough
    for a server restart's refused connections; a sentinel client's spans its failover window."""

    def __init__(self, retries: int = 10, base: float = 0.01, cap: float = 1.0, jitter: bool = True) -> None:
        self.retries, self.base, self.cap, self.jitter = retries, base, cap, jitter

    def pause(self, failures: int) -> float:
        step = self.base * (2**failures)
        return min(self.cap, step * random.random() if self.jitter else step)

    def call(self, do: Callable[[], T], failed: Callable[[BaseException], None]) -> T:
        failures = 0
        while True:
            try:
                return do()
            except RETRIED as exc:
                failed(exc)
                failures += 1
                if isinstance(exc, AuthenticationError) or failures > self.retries:
                    raise
                time.sleep(self.pause(failures))


class Client(Iterating):
    """A Redis client for one server (or one sentinel-named primary), safe across threads and
    forks: each call borrows a connection from the pool for its round trip."""

    def __init__(self, pool: Pool, retry: Retry | None = None) -> None:
        self.connection_pool = pool
        self.retry = retry if retry is not None else Retry()

    def _call(self, args: tuple[Any, ...], shape: Shape = None) -> Any:
        packed = pack(args)
        pool = self.connection_pool
        conn = pool.get()
        try:
            reply = self.retry.call(lambda: _round_trip(conn, packed), lambda _: conn.disconnect())
        finally:
            pool.release(conn)
        return shape(reply) if shape is not None else reply

    def pipeline(self, transaction: bool = True) -> Pipeline:
        return Pipeline(self, transaction)

    def register_script(self, source: str | bytes) -> Script:
        return Script(self, source)

    def pubsub(self, ignore_subscribe_messages: bool = False) -> PubSub:
        from engine.resp.pubsub import PubSub

        return PubSub(self, ignore_subscribe_messages)

    def connection(self) -> Connection:
        """A connection outside the pool (for a blocking read or a subscription), same settings."""
        return self.connection_pool.make()

    def shutdown(self, save: bool = False, nosave: bool = False) -> None:
        """Stop the server. Its connection closing is the answer (a reply means it refused)."""
        args = ("SHUTDOWN", *(("SAVE",) if save else ()), *(("NOSAVE",) if nosave else ()))
        conn = self.connection_pool.make()
        try:
            conn.send_packed_command(pack(args))
            conn.read_response()
        except ConnectionError:
            return
        finally:
            conn.disconnect()
        raise ResponseError("SHUTDOWN did not stop the server")

    def close(self) -> None:
        self.connection_pool.disconnect()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<resp.Client {self.connection_pool!r}>"


def _round_trip(conn: Connection, packed: bytes) -> Any:
    conn.send_packed_command(packed)
    return conn.read_response()


def read_reply(conn: Connection) -> Any:
    """The next reply; an error reply returned, not raised, so the replies after it are still read."""
    try:
        return conn.read_response()
    except ResponseError as exc:
        return exc


class Pipeline(Iterating):
    """Commands queued and sent in one write; ``execute`` returns their replies in order. With
    ``transaction`` they are wrapped in ``MULTI``/``EXEC`` and run as one step on the server."""

    def __init__(self, client: Client, transaction: bool) -> None:
        self.client = client
        self.transaction = transaction
        self.commands: list[tuple[tuple[Any, ...], Shape]] = []

    def _call(self, args: tuple[Any, ...], shape: Shape = None) -> Pipeline:
        self.commands.append((args, shape))
        return self

    def __len__(self) -> int:
        return len(self.commands)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reset()

    def reset(self) -> None:
        self.commands = []

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        commands, self.commands = self.commands, []
        if not commands:
            return []
        wrapped = [(("MULTI",), None), *commands, (("EXEC",), None)] if self.transaction else commands
        packed = b"".join(pack(args) for args, _ in wrapped)
        pool = self.client.connection_pool
        conn = pool.get()
        try:
            replies = self.client.retry.call(
                lambda: self._round_trip(conn, packed, len(wrapped)), lambda _: conn.disconnect()
            )
        finally:
            pool.release(conn)
        return _shaped(replies, [shape for _, shape in commands], raise_on_error)

    def _round_trip(self, conn: Connection, packed: bytes, count: int) -> list[Any]:
        conn.send_packed_command(packed)
        replies = [read_reply(conn) for _ in range(count)]
        if not self.transaction:
            return replies
        queued = next((r for r in replies[1:-1] if isinstance(r, ResponseError)), None)
        if queued is not None:  # a command refused as queued: EXEC aborted, nothing ran
            raise queued
        if isinstance(replies[-1], ResponseError):
            raise replies[-1]
        if replies[-1] is None:
            raise WatchError("Watched variable changed.")
        return list(replies[-1])


def _shaped(replies: list[Any], shapes: Sequence[Shape], raise_on_error: bool) -> list[Any]:
    out: list[Any] = []
    for reply, shape in zip(replies, shapes, strict=True):
        if isinstance(reply, RedisError):
            if raise_on_error:
                raise reply
            out.append(reply)
        else:
            out.append(shape(reply) if shape is not None else reply)
    return out


class Script:
    """A Lua script run by its SHA1 digest, loaded on the first ``NOSCRIPT`` (a server restart or
    a failover forgets loaded scripts)."""

    def __init__(self, client: Client, source: str | bytes) -> None:
        self.client = client
        self.source = source
        data = source.encode() if isinstance(source, str) else source
        self.sha = hashlib.sha1(data).hexdigest()

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = (), client: Client | None = None) -> Any:
        target = client or self.client
        try:
            return target.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            target.script_load(self.source)
            return target.evalsha(self.sha, len(keys), *keys, *args)
