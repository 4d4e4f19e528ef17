"""Pick a broker implementation from a URL's scheme."""

from __future__ import annotations

from urllib.parse import urlsplit

from engine.broker.base import Broker
from engine.config import mask_url
from engine.exceptions import ImproperlyConfigured
from engine.redisconn import REDIS_SCHEMES


def connect(url: str) -> Broker:
    scheme = urlsplit(url).scheme.lower()
    if scheme in REDIS_SCHEMES:
        from engine.broker.redis import RedisBroker

        return RedisBroker(url)
    if scheme in ("amqp", "amqps", "pyamqp"):
        raise ImproperlyConfigured(
            f"AMQP brokers are not supported yet ({mask_url(url)}); use a Redis URL or the bundled broker"
        )
    raise ImproperlyConfigured(
        f"unsupported broker URL scheme {scheme!r} in {mask_url(url)} "
        "(use redis://, rediss:// or redis+socket://)"
    )
