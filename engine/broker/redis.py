"""The Redis broker: kombu's queue layout (so Celery shares the queues), our own ownership.

Queues are kombu's lists (LPUSH to publish, pop from the right, ``q\\x06\\x16N`` priority
buckets), so Celery clients and workers interoperate. In-flight messages, the delayed set and
dead letters are ours: per-owner hashes recovered on heartbeat expiry, not a shared ``unacked``
hash restored after an hour (kombu#337, celery#7009).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Sequence
from itertools import count
from typing import Any

import redis
from redis.exceptions import NoScriptError

from engine.broker import redis_scripts as lua
from engine.broker.base import DeadLetter, Delivery
from engine.protocol.task import PRIORITY_SEP, PRIORITY_STEPS, priority_key, routing_of
from engine.redisconn import ThreadConnections, client_from_url, guarded

INFLIGHT = "tqctl.inflight."
OWNERS = "tqctl.owners"
DELAYED = "tqctl.delayed"
DEAD_RAW = "tqctl.dead.raw"
DEAD_META = "tqctl.dead.meta"
DEAD_INDEX = "tqctl.dead.index"
SEP = "\x1f"


def binding_member(queue: str) -> str:
    return f"{queue}{PRIORITY_SEP}{PRIORITY_SEP}{queue}"


def serving_order(queues: Sequence[str]) -> list[str]:
    """All list keys for ``queues``, lowest priority number first, as kombu's consumer polls."""
    return [priority_key(q, step) for step in PRIORITY_STEPS for q in queues]


class RedisBroker:
    def __init__(self, url: str, client: redis.Redis | None = None) -> None:
        self.url = url
        self.client = client or client_from_url(url)
        self._scripts = {
            name: self.client.register_script(getattr(lua, name))
            for name in ("FETCH", "REQUEUE", "REQUEUE_ALL", "DEFER", "PROMOTE", "REAP", "DEAD")
        }
        self._dead_requeue = self.client.register_script(lua.DEAD_REQUEUE)
        self._seq = count(1)
        self._order_cache: dict[tuple[str, ...], list[str]] = {}
        self._conns = ThreadConnections(self.client)  # publish's per-thread connections
        self._fconn: redis.connection.AbstractConnection | None = None  # the consumer's, for fetch
        self._fpid, self._fetch_lock = 0, threading.Lock()
        # The in-flight record written after a BRPOP, sent but its reply not yet read (see ``fetch``).
        self._unconfirmed: tuple[str, str, bytes] | None = None

    # -- connection -------------------------------------------------------------------------
    def ping(self) -> None:
        guarded(self.url, self.client.ping)

    def close(self) -> None:
        try:
            self._confirm()
        except (redis.RedisError, OSError):
            pass  # closing because the broker is gone: the record is the reaper's business now
        self._fconn = None
        self._conns.close()
        self.client.close()

    # -- publishing ---------------------------------------------------------------------------
    def declare(self, queues: Iterable[str]) -> None:
        """Write kombu's binding rows so Celery clients publishing via an exchange reach us."""
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.sadd(f"_kombu.binding.{queue}", binding_member(queue))
            pipe.sadd(f"_kombu.binding_permanent.{queue}", binding_member(queue))
        guarded(self.url, pipe.execute)

    def publish(self, queue: str, raw: bytes, priority: int | None = None) -> None:
        """LPUSH on this thread's own connection, past redis-py's per-command machinery (pool
        checkout, retries, observability): about a third of a ``delay()``'s client time. The
        reply is still awaited, so a return means the message is in the list."""
        key = priority_key(queue, priority)
        conn = self._conns.get()
        try:
            # No PING health check first: after a quiet minute that would be a round trip before
            # the first task; a connection found dead here is retried below instead.
            conn.send_packed_command(conn.pack_command("LPUSH", key, raw), check_health=False)
            reply = conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            conn.disconnect()
            self.client.lpush(key, raw)  # redis-py's own retry policy decides from here
            return
        if isinstance(reply, redis.ResponseError):
            raise reply

    def publish_many(self, items: Sequence[tuple[str, bytes, int | None]], chunk: int = 1000) -> None:
        """One round trip; each run of messages for the same list is one multi-value LPUSH, which
        leaves them in the same order as that many single LPUSHes (consumers pop the first one first)."""
        pipe = self.client.pipeline(transaction=False)
        key, batch = None, []
        for queue, raw, priority in items:
            target = priority_key(queue, priority)
            if target != key or len(batch) >= chunk:
                if batch:
                    pipe.lpush(key, *batch)
                key, batch = target, []
            batch.append(raw)
        if batch:
            pipe.lpush(key, *batch)
        pipe.execute()

    # -- consuming ----------------------------------------------------------------------------
    def _keys(self, queues: Sequence[str]) -> list[str]:
        key = tuple(queues)
        order = self._order_cache.get(key)
        if order is None:
            order = self._order_cache[key] = serving_order(queues)
        return order

    def fetch(
        self,
        owner: str,
        queues: Sequence[str],
        limit: int,
        timeout: float,
        acks: Sequence[str] = (),
    ) -> list[Delivery]:
        """Take up to ``limit`` messages into ``owner``'s in-flight hash; block ``timeout`` if none.

        Pending acks ride in the same round trip. The blocking path is a BRPOP followed at once
        by recording the message, so a crash in that instant is the only unrecorded window. That
        record's reply is read later (``_confirm``): the task starts a round trip sooner, and every
        call that touches the in-flight hash reads it first, so nothing can overtake the record.
        """
        inflight = INFLIGHT + owner
        keys = self._keys(queues)
        prefix = f"{next(self._seq)}"
        with self._fetch_lock:
            self._confirm_locked()
            # One EVALSHA on the consumer's own connection (acks ride inside the script).
            flat = self._fetch_call("EVALSHA", self._scripts["FETCH"].sha, 1 + len(keys), inflight, *keys,
                                    limit, prefix, *acks)
            if flat:
                return [Delivery(flat[i].decode(), flat[i + 1].decode(), flat[i + 2])
                        for i in range(0, len(flat), 3)]
            if timeout <= 0:
                return []
            got = self._fetch_call("BRPOP", *keys, max(timeout, 0.01))
            if not got:
                return []
            key, raw = got[0].decode(), got[1]
            tag = f"{prefix}.b"
            record = key.encode() + SEP.encode() + raw
            conn = self._fetch_conn()
            try:
                conn.send_command("HSET", inflight, tag, record)
                self._unconfirmed = (inflight, tag, record)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                conn.disconnect()
                self.client.hset(inflight, tag, record)  # the message is ours now: retry elsewhere
            return [Delivery(tag, key, raw)]

    def _confirm(self) -> None:
        if self._unconfirmed is not None:
            with self._fetch_lock:
                self._confirm_locked()

    def _confirm_locked(self) -> None:
        """Read the in-flight record's reply; if the connection failed, write it again elsewhere."""
        pending, self._unconfirmed = self._unconfirmed, None
        if pending is None or self._fconn is None or self._fpid != os.getpid():
            return  # (a forked child: that socket and its reply are the parent's)
        try:
            self._fconn.read_response()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            self._fconn.disconnect()
            self.client.hset(*pending)  # HSET is idempotent: harmless if the first one landed

    def _fetch_conn(self) -> redis.connection.AbstractConnection:
        conn = self._fconn
        if conn is None or self._fpid != os.getpid():
            conn = self._fconn = self.client.connection_pool.make_connection()
            self._fpid = os.getpid()
            self._conns.adopt(conn)
        return conn

    def _fetch_call(self, *args: Any) -> Any:
        """One command on the consumer's own connection, past redis-py's per-command machinery."""
        conn = self._fetch_conn()
        try:
            conn.send_command(*args)
            return conn.read_response()
        except NoScriptError:
            self.client.script_load(lua.FETCH)
            conn.send_command(*args)
            return conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            conn.disconnect()
            raise

    def ack(self, owner: str, tags: Sequence[str]) -> None:
        self._confirm()
        if tags:
            self.client.hdel(INFLIGHT + owner, *tags)

    def requeue(self, owner: str, tags: Sequence[str]) -> int:
        self._confirm()
        if not tags:
            return 0
        return int(self._scripts["REQUEUE"](keys=[INFLIGHT + owner], args=list(tags)))

    def requeue_all(self, owner: str) -> int:
        self._confirm()
        return int(self._scripts["REQUEUE_ALL"](keys=[INFLIGHT + owner]))

    def hand_back(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Put messages we no longer own in the ledger back at the front of their lists."""
        if items:
            pipe = self.client.pipeline(transaction=False)
            for queue_key, raw in items:
                pipe.rpush(queue_key, mark_redelivered(raw))
            pipe.execute()

    def inflight_count(self, owner: str) -> int:
        self._confirm()
        return int(self.client.hlen(INFLIGHT + owner))

    # -- delayed messages ---------------------------------------------------------------------
    def defer(self, owner: str, tag: str, eta: float) -> None:
        self._confirm()
        self._scripts["DEFER"](keys=[INFLIGHT + owner, DELAYED], args=[tag, repr(eta)])

    def promote_due(self, now: float, limit: int = 500) -> tuple[int, float | None]:
        moved, nxt = self._scripts["PROMOTE"](keys=[DELAYED], args=[repr(now), limit])
        return int(moved), (float(nxt) if nxt else None)

    def delayed_count(self) -> int:
        return int(self.client.zcard(DELAYED))

    # -- owner liveness -----------------------------------------------------------------------
    def heartbeat(self, owner: str, now: float) -> None:
        self.client.zadd(OWNERS, {owner: int(now * 1000)})

    def retire(self, owner: str) -> None:
        self._confirm()
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(OWNERS, owner)
        pipe.delete(INFLIGHT + owner)
        pipe.execute()

    def reap(self, now: float, timeout: float) -> int:
        cutoff = int((now - timeout) * 1000)
        return int(self._scripts["REAP"](keys=[OWNERS], args=[cutoff, INFLIGHT]))

    # -- dead letters -------------------------------------------------------------------------
    def dead_letter(self, owner: str | None, tag: str | None, letter: DeadLetter) -> None:
        self._confirm()
        meta = {k: v for k, v in letter.as_dict().items() if k not in ("id", "size")}
        self._scripts["DEAD"](
            keys=[INFLIGHT + (owner or "-"), DEAD_RAW, DEAD_META, DEAD_INDEX],
            args=[tag or "", letter.id, letter.raw, json.dumps(meta), repr(letter.time)],
        )

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        ids = [i.decode() for i in self.client.zrevrange(DEAD_INDEX, 0, max(limit, 1) - 1)]
        return [letter for i in ids if (letter := self.dead_letter_get(i)) is not None]

    def dead_letter_count(self) -> int:
        return int(self.client.zcard(DEAD_INDEX))

    def dead_letter_get(self, letter_id: str) -> DeadLetter | None:
        raw, meta = self.client.hmget(DEAD_RAW, letter_id), self.client.hget(DEAD_META, letter_id)
        if raw[0] is None or meta is None:
            return None
        return DeadLetter(id=letter_id, raw=raw[0], **json.loads(meta))

    def dead_letter_requeue(self, letter_id: str) -> bool:
        letter = self.dead_letter_get(letter_id)
        if letter is None:
            return False
        queue, priority = routing_of(letter.raw)
        target = priority_key(letter.queue or queue or "celery", priority)
        keys = [DEAD_RAW, DEAD_META, DEAD_INDEX, target]
        return bool(self._dead_requeue(keys=keys, args=[letter_id]))

    def dead_letter_delete(self, letter_id: str) -> bool:
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(DEAD_RAW, letter_id)
        pipe.hdel(DEAD_META, letter_id)
        pipe.zrem(DEAD_INDEX, letter_id)
        return bool(pipe.execute()[0])

    # -- queues -------------------------------------------------------------------------------
    def queue_depth(self, queue: str) -> int:
        pipe = self.client.pipeline(transaction=False)
        for step in PRIORITY_STEPS:
            pipe.llen(priority_key(queue, step))
        return sum(pipe.execute())

    def purge(self, queue: str) -> int:
        depth = self.queue_depth(queue)
        self.client.delete(*(priority_key(queue, step) for step in PRIORITY_STEPS))
        return depth


def mark_redelivered(raw: bytes) -> bytes:
    """``delivery_info['redelivered'] = True`` by the same byte edit as the Lua scripts' (kombu sets
    it on every message it restores), so a ``Reject(requeue=True)`` task can tell the second try."""
    if b'"redelivered": true' in raw:
        return raw
    for marker in (b'"delivery_info": {', b'"delivery_info":{'):
        at = raw.find(marker)
        if at >= 0:
            end = at + len(marker)
            sep = b"" if raw[end:end + 1] == b"}" else b", "
            return raw[:end] + b'"redelivered": true' + sep + raw[end:]
    return raw


def now() -> float:
    return time.time()
