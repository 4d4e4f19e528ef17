"""Pick a result backend from a URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from engine.backend.base import ResultBackend
from engine.config import mask_url
from engine.exceptions import ImproperlyConfigured
from engine.redisconn import REDIS_SCHEMES


def connect(
    url: str | None, expires: float | None = 86400, broker_url: str | None = None, app: Any = None
) -> ResultBackend | None:
    """``broker_url``: where ``rpc://`` sends results (the broker's own connection, as in Celery);
    ``app``: whose settings a Redis backend reads (failure and chord expiry, chord ordering)."""
    if not url or url in ("disabled", "none"):
        return None
    scheme = urlsplit(url.split(";", 1)[0]).scheme.lower()
    if scheme == "rpc":
        broker_scheme = urlsplit(str(broker_url or "")).scheme.lower()
        if broker_scheme not in ("amqp", "amqps", "pyamqp"):
            raise ImproperlyConfigured("the rpc:// result backend needs an AMQP broker (amqp://, amqps://)")
        from engine.backend.rpc import RpcBackend

        return RpcBackend(url, broker_url or "", expires)
    if scheme in REDIS_SCHEMES:
        from engine.backend.redis import RedisBackend

        return RedisBackend(url, expires=expires, app=app)
    if scheme in ("memory", "cache+memory"):
        from engine.backend.memory import MemoryBackend

        return MemoryBackend(url)
    raise ImproperlyConfigured(
        f"unsupported result backend {mask_url(url)} (use redis://, rediss://, redis+socket://, sentinel://, rpc://)"
    )
