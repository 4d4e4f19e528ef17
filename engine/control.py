"""The client side of remote control: broadcast a command, collect each worker's reply.

Revocations are also written to the broker with an expiry, so a task revoked while every
worker is down still never runs, and a restarted worker still knows its revokes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, overload

from engine import resp
from engine.broker.fanout import RedisFanout
from engine.control_inspect import Inspect
from engine.protocol import control as protocol
from engine.redisconn import as_text
from engine.signing import Signer, from_env

REVOKED_KEY = "tqctl.revoked"
REVOKE_TTL = 3 * 3600.0


def store_revoked(fanout: RedisFanout, task_ids: Iterable[str], ttl: float = REVOKE_TTL) -> None:
    expiry = time.time() + ttl
    mapping = {task_id: expiry for task_id in task_ids}
    if mapping and fanout.client is not None:  # None: no store (AMQP with rpc:// results)
        fanout.client.zadd(REVOKED_KEY, mapping)


def load_revoked(fanout: RedisFanout, now: float | None = None) -> set[str]:
    now = time.time() if now is None else now
    if fanout.client is None:  # no store (AMQP with rpc:// results): revokes live in memory
        return set()
    fanout.client.zremrangebyscore(REVOKED_KEY, "-inf", now)
    return {as_text(m) for m in fanout.client.zrangebyscore(REVOKED_KEY, now, "+inf")}


def revoked_among(fanout: RedisFanout, task_ids: Sequence[str], now: float | None = None) -> set[str]:
    """Which of ``task_ids`` are revoked (stored and not yet expired), in one round trip: for a
    view of a few hundred ids, without reading the whole store as a worker does at start."""
    if not task_ids or fanout.client is None:
        return set()
    now = time.time() if now is None else now
    scores = fanout.client.zmscore(REVOKED_KEY, list(task_ids))
    return {task_id for task_id, score in zip(task_ids, scores, strict=True) if score is not None and score > now}


class Control:
    def __init__(
        self,
        url: str,
        client: resp.Client | None = None,
        signer: Signer | None = None,
        fanout: RedisFanout | None = None,
    ) -> None:
        self.fanout = fanout if fanout is not None else RedisFanout(url, client)
        # The console and the CLI have no app settings: TQCTL_SIGNING_KEYS signs their commands.
        self.signer = signer if signer is not None else from_env()

    def close(self) -> None:
        self.fanout.close()

    def broadcast(
        self,
        method: str,
        arguments: dict[str, Any] | None = None,
        *,
        destination: list[str] | None = None,
        pattern: str | None = None,
        reply: bool = True,
        timeout: float = 1.0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Send ``method`` to the matching workers; returns ``[{node: result}, ...]``."""
        oid = str(uuid.uuid4()) if reply else None
        ticket, raw = protocol.encode_request(
            method,
            arguments,
            destination=destination,
            pattern=pattern,
            matcher="glob" if pattern else None,
            reply_oid=oid,
            timeout=timeout,
        )
        if self.signer is not None:
            raw = self.signer.sign(raw)
        if oid is None:
            self.fanout.publish(protocol.EXCHANGE, "", raw)
            return []
        queue = self.fanout.bind_reply(oid)
        try:
            self.fanout.publish(protocol.EXCHANGE, "", raw)
            return self._collect(queue, ticket, timeout, limit or (len(destination) if destination else None))
        finally:
            self.fanout.unbind_reply(oid)

    def _collect(self, queue: str, ticket: str | None, timeout: float, limit: int | None) -> list[dict[str, Any]]:
        replies: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while limit is None or len(replies) < limit:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # Waits of at most a second: a longer BRPOP than the client's socket timeout would
            # end in a TimeoutError instead of "no more replies".
            got = self.fanout.pop_reply(queue, min(left, 1.0))
            if got is None:
                continue
            their_ticket, body = protocol.decode_reply(got)
            if their_ticket == ticket and body:
                replies.append(body)
        return replies

    # -- conveniences with Celery's names --------------------------------------------------------
    def ping(self, timeout: float = 1.0, destination: list[str] | None = None) -> list[dict[str, Any]]:
        return self.broadcast("ping", timeout=timeout, destination=destination)

    @overload
    def inspect(
        self,
        method: None = None,
        timeout: float = 1.0,
        destination: str | list[str] | None = None,
        *,
        limit: int | None = None,
        pattern: str | None = None,
        matcher: str | None = None,
    ) -> Inspect: ...

    @overload
    def inspect(
        self, method: str, timeout: float = 1.0, destination: list[str] | None = None, **arguments: Any
    ) -> dict[str, Any]: ...

    def inspect(
        self,
        method: str | list[str] | None = None,
        timeout: float = 1.0,
        destination: str | list[str] | None = None,
        **arguments: Any,
    ) -> dict[str, Any] | Inspect:
        """``inspect("active", ...)`` runs one command and merges the replies (``{node: reply}``);
        with no command, Celery's ``Inspect`` object (``inspect(destination=...).active()``).
        A list first is Celery's positional ``destination``."""
        if method is None or isinstance(method, list | tuple):
            return Inspect(self, destination=destination or method, timeout=timeout, **arguments)
        merged: dict[str, Any] = {}
        nodes = [destination] if isinstance(destination, str) else destination
        for reply in self.broadcast(method, arguments, timeout=timeout, destination=nodes):
            merged.update(reply)
        return merged

    def revoke(
        self,
        task_ids: str | list[str],
        terminate: bool = False,
        signal: str = "SIGTERM",
        destination: list[str] | None = None,
        reply: bool = False,
        timeout: float = 1.0,
    ) -> list[dict[str, Any]]:
        ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
        store_revoked(self.fanout, ids)
        return self.announce_revoke(ids, terminate, signal, destination, reply, timeout)

    def announce_revoke(
        self,
        ids: list[str],
        terminate: bool = False,
        signal: str = "SIGTERM",
        destination: list[str] | None = None,
        reply: bool = False,
        timeout: float = 1.0,
    ) -> list[dict[str, Any]]:
        """``revoke``'s broadcast alone, after the store: the CLI tells a revoke that was stored but
        not heard (RabbitMQ away, its Redis backend up) from one that was never stored."""
        args = {"task_id": ids, "terminate": terminate, "signal": signal}
        return self.broadcast("revoke", args, destination=destination, reply=reply, timeout=timeout)

    def revoke_by_stamped_headers(
        self,
        headers: dict[str, Any],
        terminate: bool = False,
        signal: str = "SIGTERM",
        destination: list[str] | None = None,
        reply: bool = False,
        timeout: float = 1.0,
    ) -> list[dict[str, Any]]:
        """Celery's: every worker revokes the tasks stamped with one of these values (``{header: values}``).

        Workers keep these in memory only, as Celery's do: a worker started later does not know them."""
        args = {"headers": headers, "terminate": terminate, "signal": signal}
        return self.broadcast("revoke_by_stamped_headers", args, destination=destination, reply=reply, timeout=timeout)
