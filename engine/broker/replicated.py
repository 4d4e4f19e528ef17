"""A Redis broker whose publishes return only once replicas hold the message (``WAIT``).

Redis replicates asynchronously: a primary that acknowledges an LPUSH and dies before its
replica copied it loses the message, and a failover promotes the replica without it. With
``tqctl_publish_wait_replicas = N`` each publish is followed, on the same connection and in the
same round trip, by ``WAIT N timeout``, so ``delay()`` returns only once N replicas have it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from engine.broker.redis import RedisBroker
from engine.config import url_host
from engine.exceptions import BrokerUnavailable
from engine.protocol.task import priority_key


class NotReplicated(BrokerUnavailable):
    """The primary took the message but fewer replicas than asked confirmed it in time: it will
    most likely run, but a failover now could lose it (publishing again could run it twice)."""


class ReplicatedBroker(RedisBroker):
    def __init__(self, url: str, replicas: int, timeout: float, client: redis.Redis | None = None) -> None:
        super().__init__(url, client)
        self.replicas = replicas
        self.wait_ms = max(int(timeout * 1000), 1)

    def publish(self, queue: str, raw: bytes, priority: int | None = None) -> None:
        """LPUSH and WAIT on this thread's connection. Inside ``batched`` (a group's members) the
        message waits for the block's end, as on RedisBroker: one ``publish_many``, one WAIT."""
        gathering = self._gathering.held()
        if gathering is not None:
            gathering.append((queue, raw, priority))
            return
        key = priority_key(queue, priority)
        conn = self._conns.get()
        try:
            conn.send_packed_command(
                conn.pack_commands([("LPUSH", key, raw), ("WAIT", self.replicas, self.wait_ms)]), check_health=False
            )
            replies = [_reply(conn), _reply(conn)]
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            conn.disconnect()
            pipe = self.client.pipeline(transaction=False)  # one connection: WAIT covers this LPUSH
            pipe.lpush(key, raw)
            pipe.execute_command("WAIT", self.replicas, self.wait_ms)
            replies = pipe.execute(raise_on_error=False)
        self._check(replies, 1)

    def publish_many(self, items: Sequence[tuple[str, bytes, int | None]], chunk: int = 1000) -> None:
        pipe = self.client.pipeline(transaction=False)
        for queue, raw, priority in items:
            pipe.lpush(priority_key(queue, priority), raw)
        pipe.execute_command("WAIT", self.replicas, self.wait_ms)
        self._check(pipe.execute(raise_on_error=False), len(items))

    def _check(self, replies: list[Any], published: int) -> None:
        errors = [reply for reply in replies if isinstance(reply, redis.ResponseError)]
        if errors:
            raise errors[0]
        acked = int(replies[-1])
        if acked < self.replicas:
            raise NotReplicated(
                f"{published} message(s) taken by the primary at {url_host(self.url)} but only {acked} of "
                f"{self.replicas} replica(s) confirmed within {self.wait_ms / 1000:g} s "
                "(tqctl_publish_wait_replicas): they may be lost if the primary fails now"
            )


def _reply(conn: redis.connection.AbstractConnection) -> Any:
    try:
        return conn.read_response()
    except redis.ResponseError as exc:
        return exc
