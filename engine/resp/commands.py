"""The commands the engine and console send, each with the shape its reply is used in.

One mixin for the client (runs at once) and the pipeline (queues until ``execute``): both call
``self._call(args, shape)``. Names and reply shapes follow redis-py's, which Celery users know
from ``app.backend.client``; arguments go to the server as given (bytes, str, int or float)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

Shape = Callable[[Any], Any] | None


def ok(reply: Any) -> bool:
    return reply in (b"OK", "OK", True)


def set_reply(reply: Any) -> bool | None:
    return True if reply in (b"OK", "OK") else None


def pong(reply: Any) -> bool:
    return reply in (b"PONG", "PONG")


def pairs(reply: Any) -> dict[Any, Any]:
    it = iter(reply or ())
    return dict(zip(it, it, strict=True))


def scored(reply: Any) -> list[tuple[Any, float]]:
    it = iter(reply or ())
    return [(member, float(score)) for member, score in zip(it, it, strict=True)]


def floats(reply: Any) -> list[float | None]:
    return [None if v is None else float(v) for v in reply or ()]


def text(reply: Any) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def pair_or_none(reply: Any) -> tuple[Any, Any] | None:
    return tuple(reply) if reply else None  # type: ignore[return-value]


def info(reply: Any) -> dict[str, Any]:
    """INFO's text as a dict: numbers as numbers, ``a=1,b=2`` as dicts, ``a,b`` as lists."""
    found: dict[str, Any] = {}
    for line in text(reply).splitlines():
        if line and not line.startswith("#"):
            key, sep, value = line.partition(":")
            if sep:
                found[key] = _value(value)
    return found


def _value(value: str) -> Any:
    if "=" in value:
        return dict(_field(part) for part in value.split(",") if part)
    if "," in value:
        return [_value(v) for v in value.split(",") if v]
    try:
        return float(value) if "." in value else int(value)
    except ValueError:
        return value


def _field(part: str) -> tuple[str, Any]:
    key, sep, value = part.rpartition("=")
    return (key, _value(value)) if sep else (part, True)


def clients(reply: Any) -> list[dict[str, str]]:
    """CLIENT LIST: one dict a connection (``id``, ``addr``, ``name``, ``cmd`` ...)."""
    return [dict(field.partition("=")[::2] for field in line.split(" ")) for line in text(reply).splitlines() if line]


def _scores(withscores: bool) -> Shape:
    return scored if withscores else None


class Commands:
    """Every method builds one command; ``_call`` decides whether it runs now or later."""

    def _call(self, args: tuple[Any, ...], shape: Shape = None) -> Any:
        raise NotImplementedError

    # -- server and keys ----------------------------------------------------------------------
    def ping(self) -> Any:
        return self._call(("PING",), pong)

    def info(self, section: str | None = None) -> Any:
        return self._call(("INFO", section) if section else ("INFO",), info)

    def client_list(self) -> Any:
        return self._call(("CLIENT", "LIST"), clients)

    def client_id(self) -> Any:
        return self._call(("CLIENT", "ID"))

    def client_kill_filter(self, _id: Any = None, _type: str | None = None) -> Any:
        args = [*(("ID", _id) if _id is not None else ()), *(("TYPE", _type) if _type is not None else ())]
        return self._call(("CLIENT", "KILL", *args))

    def script_flush(self) -> Any:
        return self._call(("SCRIPT", "FLUSH"), ok)

    def config_get(self, pattern: str = "*") -> Any:
        return self._call(("CONFIG", "GET", pattern), lambda r: {text(k): text(v) for k, v in pairs(r).items()})

    def config_set(self, name: str, value: Any) -> Any:
        return self._call(("CONFIG", "SET", name, value), ok)

    def flushall(self) -> Any:
        return self._call(("FLUSHALL",), ok)

    def flushdb(self) -> Any:
        return self._call(("FLUSHDB",), ok)

    def dbsize(self) -> Any:
        return self._call(("DBSIZE",))

    def time(self) -> Any:
        return self._call(("TIME",), lambda r: (int(r[0]), int(r[1])))

    def delete(self, *names: Any) -> Any:
        return self._call(("DEL", *names))

    def exists(self, *names: Any) -> Any:
        return self._call(("EXISTS", *names))

    def expire(self, name: Any, time: int) -> Any:
        return self._call(("EXPIRE", name, int(time)), bool)

    def ttl(self, name: Any) -> Any:
        return self._call(("TTL", name))

    def pttl(self, name: Any) -> Any:
        return self._call(("PTTL", name))

    def type(self, name: Any) -> Any:
        return self._call(("TYPE", name))

    def keys(self, pattern: Any = "*") -> Any:
        return self._call(("KEYS", pattern))

    def scan(self, cursor: int = 0, match: Any = None, count: int | None = None, _type: str | None = None) -> Any:
        args: list[Any] = ["SCAN", cursor]
        if match is not None:
            args += ["MATCH", match]
        if count is not None:
            args += ["COUNT", count]
        if _type is not None:
            args += ["TYPE", _type]
        return self._call(tuple(args), lambda r: (int(r[0]), r[1]))

    def script_load(self, script: Any) -> Any:
        return self._call(("SCRIPT", "LOAD", script), text)

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return self._call(("EVALSHA", sha, numkeys, *keys_and_args))

    def pubsub_channels(self, pattern: Any = "*") -> Any:
        return self._call(("PUBSUB", "CHANNELS", pattern))

    def publish(self, channel: Any, message: Any) -> Any:
        return self._call(("PUBLISH", channel, message))

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return self._call(args)

    # -- strings ------------------------------------------------------------------------------
    def get(self, name: Any) -> Any:
        return self._call(("GET", name))

    def mget(self, keys: Any, *args: Any) -> Any:
        names = [keys] if isinstance(keys, str | bytes) else list(keys)
        return self._call(("MGET", *names, *args))

    def set(self, name: Any, value: Any, ex: Any = None, px: Any = None, nx: bool = False, xx: bool = False) -> Any:
        args: list[Any] = ["SET", name, value]
        if ex is not None:
            args += ["EX", _whole(ex)]
        if px is not None:
            args += ["PX", _whole(px, 1000)]
        if nx:
            args.append("NX")
        if xx:
            args.append("XX")
        return self._call(tuple(args), set_reply)

    def setex(self, name: Any, time: Any, value: Any) -> Any:
        return self._call(("SETEX", name, _whole(time), value), ok)

    def incr(self, name: Any, amount: int = 1) -> Any:
        return self._call(("INCRBY", name, amount))

    # -- lists --------------------------------------------------------------------------------
    def lpush(self, name: Any, *values: Any) -> Any:
        return self._call(("LPUSH", name, *values))

    def rpush(self, name: Any, *values: Any) -> Any:
        return self._call(("RPUSH", name, *values))

    def lpop(self, name: Any) -> Any:
        return self._call(("LPOP", name))

    def rpop(self, name: Any) -> Any:
        return self._call(("RPOP", name))

    def brpop(self, keys: Any, timeout: float = 0) -> Any:
        names = [keys] if isinstance(keys, str | bytes) else list(keys)
        return self._call(("BRPOP", *names, timeout), pair_or_none)

    def llen(self, name: Any) -> Any:
        return self._call(("LLEN", name))

    def lrange(self, name: Any, start: int, end: int) -> Any:
        return self._call(("LRANGE", name, start, end))

    def lindex(self, name: Any, index: int) -> Any:
        return self._call(("LINDEX", name, index))

    def ltrim(self, name: Any, start: int, end: int) -> Any:
        return self._call(("LTRIM", name, start, end), ok)

    # -- hashes -------------------------------------------------------------------------------
    def hget(self, name: Any, key: Any) -> Any:
        return self._call(("HGET", name, key))

    def hmget(self, name: Any, keys: Any, *args: Any) -> Any:
        names = [keys] if isinstance(keys, str | bytes) else list(keys)
        return self._call(("HMGET", name, *names, *args))

    def hgetall(self, name: Any) -> Any:
        return self._call(("HGETALL", name), pairs)

    def hvals(self, name: Any) -> Any:
        return self._call(("HVALS", name))

    def hkeys(self, name: Any) -> Any:
        return self._call(("HKEYS", name))

    def hlen(self, name: Any) -> Any:
        return self._call(("HLEN", name))

    def hset(self, name: Any, key: Any = None, value: Any = None, mapping: Mapping[Any, Any] | None = None) -> Any:
        items: list[Any] = [key, value] if key is not None else []
        for k, v in (mapping or {}).items():
            items += [k, v]
        return self._call(("HSET", name, *items))

    def hsetnx(self, name: Any, key: Any, value: Any) -> Any:
        return self._call(("HSETNX", name, key, value), bool)

    def hdel(self, name: Any, *keys: Any) -> Any:
        return self._call(("HDEL", name, *keys))

    def hincrby(self, name: Any, key: Any, amount: int = 1) -> Any:
        return self._call(("HINCRBY", name, key, amount))

    # -- sets ---------------------------------------------------------------------------------
    def sadd(self, name: Any, *values: Any) -> Any:
        return self._call(("SADD", name, *values))

    def srem(self, name: Any, *values: Any) -> Any:
        return self._call(("SREM", name, *values))

    def smembers(self, name: Any) -> Any:
        return self._call(("SMEMBERS", name), lambda r: set(r or ()))

    # -- sorted sets --------------------------------------------------------------------------
    def zadd(self, name: Any, mapping: Mapping[Any, Any], nx: bool = False, xx: bool = False) -> Any:
        flags = [f for f, on in (("NX", nx), ("XX", xx)) if on]
        items: list[Any] = []
        for member, score in mapping.items():
            items += [score, member]
        return self._call(("ZADD", name, *flags, *items))

    def zcard(self, name: Any) -> Any:
        return self._call(("ZCARD", name))

    def zrem(self, name: Any, *values: Any) -> Any:
        return self._call(("ZREM", name, *values))

    def zscore(self, name: Any, value: Any) -> Any:
        return self._call(("ZSCORE", name, value), lambda r: None if r is None else float(r))

    def zmscore(self, key: Any, members: Sequence[Any]) -> Any:
        return self._call(("ZMSCORE", key, *members), floats)

    def zrange(self, name: Any, start: int, end: int, desc: bool = False, withscores: bool = False) -> Any:
        if desc:
            return self.zrevrange(name, start, end, withscores=withscores)
        args = ("ZRANGE", name, start, end, *(("WITHSCORES",) if withscores else ()))
        return self._call(args, _scores(withscores))

    def zrevrange(self, name: Any, start: int, end: int, withscores: bool = False) -> Any:
        args = ("ZREVRANGE", name, start, end, *(("WITHSCORES",) if withscores else ()))
        return self._call(args, _scores(withscores))

    def zrangebyscore(
        self,
        name: Any,
        min: Any,
        max: Any,
        start: int | None = None,
        num: int | None = None,
        withscores: bool = False,
    ) -> Any:
        args: list[Any] = ["ZRANGEBYSCORE", name, min, max]
        if withscores:
            args.append("WITHSCORES")
        if start is not None and num is not None:
            args += ["LIMIT", start, num]
        return self._call(tuple(args), _scores(withscores))

    def zremrangebyscore(self, name: Any, min: Any, max: Any) -> Any:
        return self._call(("ZREMRANGEBYSCORE", name, min, max))

    def zremrangebyrank(self, name: Any, min: int, max: int) -> Any:
        return self._call(("ZREMRANGEBYRANK", name, min, max))

    def zscan(self, name: Any, cursor: int = 0, match: Any = None, count: int | None = None) -> Any:
        args: list[Any] = ["ZSCAN", name, cursor]
        if match is not None:
            args += ["MATCH", match]
        if count is not None:
            args += ["COUNT", count]
        return self._call(tuple(args), lambda r: (int(r[0]), scored(r[1])))


class Iterating(Commands):
    """The ``*_iter`` helpers: they loop over replies, so they exist on the client only."""

    def scan_iter(self, match: Any = None, count: int | None = None, _type: str | None = None) -> Iterator[Any]:
        cursor = None
        while cursor != 0:
            cursor, keys = self.scan(cursor or 0, match=match, count=count, _type=_type)
            yield from keys

    def zscan_iter(self, name: Any, match: Any = None, count: int | None = None) -> Iterator[tuple[Any, float]]:
        cursor = None
        while cursor != 0:
            cursor, items = self.zscan(name, cursor or 0, match=match, count=count)
            yield from items


def _whole(value: Any, scale: int = 1) -> int:
    """Seconds (or ms) as the server takes them: a ``timedelta`` too, as redis-py accepts."""
    seconds = getattr(value, "total_seconds", None)
    return int(seconds() * scale) if seconds is not None else int(value)
