"""Broadcast channels on Redis, laid out as kombu does (celery-wire.md §3.3).

Fanout exchanges (``celeryev`` events, ``celery.pidbox`` control) are Redis PUB/SUB channels
named ``/<db>.<exchange>/<routing key>``; direct replies are lists found via kombu's binding
table. Fire-and-forget by nature: a subscriber that is not listening misses the message.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from engine import resp
from engine.redisconn import client_from_url

PRIORITY_SEP = "\x06\x16"
REPLY_SLICE = 2.0  # seconds one blocking pop of a reply may take, well under any socket timeout


def db_of(client: resp.Client) -> int:
    return client.connection_pool.settings.db


class RedisFanout:
    def __init__(self, url: str, client: resp.Client | None = None) -> None:
        self.url = url
        self.client = client or client_from_url(url)
        self.db = db_of(self.client)

    def channel(self, exchange: str, routing_key: str = "") -> str:
        return f"/{self.db}.{exchange}/{routing_key}" if routing_key else f"/{self.db}.{exchange}"

    def publish(self, exchange: str, routing_key: str, raw: bytes) -> None:
        self.client.publish(self.channel(exchange, routing_key), raw)

    def subscribe(self, patterns: Iterable[str]) -> resp.PubSub:
        """A pub/sub on ``exchange/pattern`` pairs; AMQP ``#`` patterns become ``*``.

        Patterns and plain channels are not mixed in one call: each kind is one command, and only
        within one command does the server confirm every subscription before any message.
        """
        pubsub = self.client.pubsub(ignore_subscribe_messages=False)  # until confirmed, below
        names = [p.replace("#", "*") for p in patterns]
        globbed = [n for n in names if "*" in n]
        exact = [n for n in names if "*" not in n]
        if globbed and exact:
            raise ValueError("subscribe to patterns or to channels in one call, not both")
        if globbed:
            pubsub.psubscribe(*globbed)
        if exact:
            pubsub.subscribe(*exact)
        self._confirmed(pubsub, len(globbed) + len(exact))
        pubsub.ignore_subscribe_messages = True
        return pubsub

    @staticmethod
    def _confirmed(pubsub: resp.PubSub, count: int, timeout: float = 10.0) -> None:
        """Wait until the server has taken every subscription.

        A caller that subscribes and then reads what was recorded before (the console's history
        replay) relies on nothing being published between the two unheard: the read goes on
        another connection, which the server may serve before this one's SUBSCRIBE.
        """
        deadline = time.monotonic() + timeout
        while count > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise resp.TimeoutError(f"the server did not confirm a subscription within {timeout:g}s")
            reply = pubsub.get_message(timeout=left)
            if reply is not None:  # one command's confirmations come before any message
                count -= 1

    # -- direct replies (kombu's binding table) -----------------------------------------------
    @staticmethod
    def reply_queue(oid: str, exchange: str = "reply.celery.pidbox") -> str:
        return f"{oid}.{exchange}"

    def bind_reply(self, oid: str, exchange: str = "reply.celery.pidbox") -> str:
        queue = self.reply_queue(oid, exchange)
        self.client.sadd(f"_kombu.binding.{exchange}", f"{oid}{PRIORITY_SEP}{PRIORITY_SEP}{queue}")
        return queue

    def unbind_reply(self, oid: str, exchange: str = "reply.celery.pidbox") -> None:
        queue = self.reply_queue(oid, exchange)
        pipe = self.client.pipeline(transaction=False)
        pipe.srem(f"_kombu.binding.{exchange}", f"{oid}{PRIORITY_SEP}{PRIORITY_SEP}{queue}")
        pipe.delete(queue, *(f"{queue}{PRIORITY_SEP}{n}" for n in (3, 6, 9)))
        pipe.execute()

    def pop_reply(self, queue: str, timeout: float) -> bytes | None:
        """The next reply on a queue ``bind_reply`` named, waiting up to ``timeout`` (None: none came).

        Blocks in slices shorter than the client's socket timeout (5 s by default): one
        ``BRPOP`` of ``timeout=10`` (``control.revoke(..., reply=True, timeout=10)``) would fail
        with a socket ``TimeoutError`` instead of waiting."""
        deadline = time.monotonic() + timeout
        socket_timeout = self.client.connection_pool.settings.socket_timeout
        most = min(REPLY_SLICE, socket_timeout / 2) if socket_timeout else REPLY_SLICE
        while True:
            left = deadline - time.monotonic()
            got = self.client.brpop([queue], timeout=min(max(left, 0.01), most))
            if got:
                return got[1].encode() if isinstance(got[1], str) else got[1]
            if deadline - time.monotonic() <= 0:
                return None

    def reply(self, oid: str, raw: bytes, exchange: str = "reply.celery.pidbox") -> None:
        self.client.lpush(self.reply_queue(oid, exchange), raw)

    def close(self) -> None:
        self.client.close()
