"""Pick a broker implementation from a URL's scheme."""

from __future__ import annotations

from urllib.parse import urlsplit

from engine.broker.base import Broker
from engine.redisconn import REDIS_SCHEMES, unsupported_url


def connect(url: str) -> Broker:
    scheme = urlsplit(url).scheme.lower()
    if scheme in REDIS_SCHEMES:
        from engine.broker.redis import RedisBroker

        return RedisBroker(url)
    raise unsupported_url(url)
