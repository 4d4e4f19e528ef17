"""Redis connections from Celery/kombu-style URLs, with errors that name the target safely."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import redis

from engine.config import mask_url, url_host
from engine.exceptions import BrokerUnavailable, ImproperlyConfigured

REDIS_SCHEMES = ("redis", "rediss", "redis+socket", "unix", "socket", "valkey", "valkeys")
T = TypeVar("T")


def client_from_url(url: str, **options: Any) -> redis.Redis:
    """A ``redis.Redis`` for ``redis://``, ``rediss://`` (TLS) or ``redis+socket://`` URLs."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    options.setdefault("socket_connect_timeout", 5.0)
    options.setdefault("health_check_interval", 30)
    if scheme in ("redis+socket", "unix", "socket"):
        query = parse_qs(parts.query)
        db = int((query.get("db") or query.get("virtual_host") or ["0"])[0])
        return redis.Redis(
            unix_socket_path=parts.path,
            db=db,
            password=parts.password,
            username=parts.username or None,
            **options,
        )
    if scheme in ("redis", "rediss", "valkey", "valkeys"):
        fixed = url.replace("valkey", "redis", 1) if scheme.startswith("valkey") else url
        return redis.Redis.from_url(fixed, **options)
    raise unsupported_url(url)


def unsupported_url(url: str) -> ImproperlyConfigured:
    """The one-line error for a URL no Redis client can use (AMQP named, as users try it first)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("amqp", "amqps", "pyamqp"):
        return ImproperlyConfigured(
            f"AMQP brokers are not supported yet ({mask_url(url)}); use a Redis URL or the bundled broker")
    return ImproperlyConfigured(
        f"unsupported broker URL scheme {scheme!r} in {mask_url(url)} (use redis://, rediss:// or redis+socket://)")


def describe_error(url: str, exc: BaseException) -> str:
    """One line naming the host and the cause, password masked."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    password = urlsplit(url).password if "://" in url else None
    if password:
        text = text.replace(password, "****")
    return f"cannot reach broker at {url_host(url)} ({mask_url(url)}): {text}"


def guarded(url: str, call: Callable[[], T]) -> T:
    """Run a Redis call, turning connection and auth failures into ``BrokerUnavailable``."""
    try:
        return call()
    except (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError) as exc:
        raise BrokerUnavailable(describe_error(url, exc)) from None
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc) or "invalid password" in str(exc):
            raise BrokerUnavailable(describe_error(url, exc)) from None
        raise


class ThreadConnections:
    """One raw connection per thread (and per process after a fork), for hot paths that skip
    redis-py's per-command machinery; ``close`` disconnects every one handed out."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._local = threading.local()
        self._handed: list[redis.connection.AbstractConnection] = []

    def get(self) -> redis.connection.AbstractConnection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            conn = local.conn = self.client.connection_pool.make_connection()
            local.pid = os.getpid()
            self._handed.append(conn)
        return conn

    def adopt(self, conn: redis.connection.AbstractConnection) -> None:
        """Also disconnect ``conn`` (made elsewhere) on ``close``."""
        self._handed.append(conn)

    def close(self) -> None:
        conns, self._handed, self._local = self._handed, [], threading.local()
        for conn in conns:
            conn.disconnect()
