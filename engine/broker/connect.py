"""Pick a broker implementation from a URL's scheme (and the settings it carries)."""

from __future__ import annotations

from urllib.parse import urlsplit

from engine.broker.base import Broker
from engine.redisconn import REDIS_SCHEMES, unsupported_url

AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


def connect(url: str) -> Broker:
    scheme = urlsplit(url.split(";", 1)[0]).scheme.lower()
    if scheme in REDIS_SCHEMES:
        wait = getattr(url, "options", {}).get("wait_replicas")
        if wait:
            from engine.broker.replicated import ReplicatedBroker

            return ReplicatedBroker(url, replicas=wait[0], timeout=wait[1])
        from engine.broker.redis import RedisBroker

        return RedisBroker(url)
    if scheme in AMQP_SCHEMES:
        from engine.broker.amqp import AmqpBroker

        return AmqpBroker(url)
    raise unsupported_url(url)
