"""The Redis broker: kombu's queue layout (so Celery shares the queues), our own ownership.

Queues are kombu's lists (LPUSH to publish, pop from the right, ``q\\x06\\x16N`` priority
buckets), so Celery clients and workers interoperate. In-flight messages, the delayed set and
dead letters are ours: per-owner hashes recovered on heartbeat expiry, not a shared ``unacked``
hash restored after an hour (kombu#337, celery#7009).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from itertools import count
from typing import Any

from hiredis import pack_command as _pack_command

from engine import forks, resp
from engine.broker import redis_scripts as lua
from engine.broker.base import DeadLetter, Delivery, Gathering, LeaseLapsed
from engine.protocol.task import PRIORITY_SEP, PRIORITY_STEPS, priority_key, routing_of
from engine.redisconn import ThreadConnections, as_bytes, as_text, client_from_url, guarded
from engine.resp import NoScriptError
from engine.resp.client import read_reply
from engine.resp.connection import pack

INFLIGHT = "tqctl.inflight."
STAGE = "tqctl.stage."
STAGES = "tqctl.stages."
CLAIMS = "tqctl.claims."
OWNERS = "tqctl.owners"
CLOCK = "tqctl.owners.clock"
DELAYED = "tqctl.delayed"
DEAD_RAW = "tqctl.dead.raw"
DEAD_META = "tqctl.dead.meta"
DEAD_INDEX = "tqctl.dead.index"
SEP = "\x1f"
IDLE_SLICE = 0.25  # seconds an idle worker blocks on one queue before it looks at every list again
LAPSED = 2  # CLAIM: still recorded, but the owner's heartbeat is too old to start a late ack
FAILED_KEEP = 4096  # fetches whose reply never came, remembered so their messages can be handed back


def binding_member(queue: str) -> str:
    return f"{queue}{PRIORITY_SEP}{PRIORITY_SEP}{queue}"


def serving_order(queues: Sequence[str]) -> list[str]:
    """All list keys for ``queues``, lowest priority number first, as kombu's consumer polls."""
    return [priority_key(q, step) for step in PRIORITY_STEPS for q in queues]


class RedisBroker:
    # A worker's pool processes may fetch under its owner id and settle each other's messages
    # (the work-sharing prefork pool): the in-flight record is the owner's, not a connection's.
    children_fetch = True

    def __init__(self, url: str, client: resp.Client | None = None) -> None:
        self.url = url
        self.client = client or client_from_url(url)
        self._scripts = {
            name: self.client.register_script(getattr(lua, name))
            for name in ("FETCH", "CLAIM", "BEAT", "REQUEUE", "REQUEUE_ALL", "DEFER", "PROMOTE", "REAP", "DEAD")
        }
        self._dead_requeue = self.client.register_script(lua.DEAD_REQUEUE)
        self._seq = count(1)
        self.tag_base = ""  # a fetch tag's prefix before its number (a work-sharing child sets its own)
        self._order_cache: dict[tuple[str, ...], list[str]] = {}
        self._conns = ThreadConnections(self.client)  # publish's per-thread connections
        self._gathering = Gathering()
        self._fconn: resp.Connection | None = None  # the consumer's, for fetch
        self._fpid, self._fetch_lock = 0, threading.Lock()
        self._turn = 0  # which queue an idle fetch blocks on next
        self._dry = False  # the last blocking fetch came back short: the next one blocks at once
        self._beat_client: resp.Client | None = None  # heartbeats' own client (short timeouts)
        self._beat_pid = 0
        # Fetches that failed (their script may still have run) and tags given up locally: what
        # ``reconcile`` hands back. Guarded by ``_orphan_lock``, touched from several threads.
        self._failed: deque[str] = deque(maxlen=FAILED_KEEP)
        self._forsaken: list[str] = []
        self._orphan_lock = threading.Lock()

    # -- connection -------------------------------------------------------------------------
    def ping(self) -> None:
        guarded(self.url, self.client.ping)

    def close(self) -> None:
        self._fconn = None
        if self._beat_client is not None:
            self._beat_client.close()
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

    def batched(self) -> AbstractContextManager[None]:
        """See ``Gathering``: a group's members in one pipeline, one round trip (an outage at the
        end is ``BrokerUnavailable``, as a single publish's)."""
        return self._gathering.block(lambda items: guarded(self.url, lambda: self.publish_many(items)))

    def publish(self, queue: str, raw: bytes, priority: int | None = None) -> None:
        """LPUSH on this thread's own connection, past the client's pool checkout and retry
        wrapper. The reply is still awaited, so a return means the message is in the list."""
        gathering = self._gathering.held()
        if gathering is not None:
            gathering.append((queue, raw, priority))
            return
        key = priority_key(queue, priority)
        conn = self._conns.get()
        name = key.encode()
        try:
            # No PING health check first: after a quiet minute that would be a round trip before
            # the first task; a connection found dead here is retried below instead. The command
            # is packed here, in one step.
            packed = b"*3\r\n$5\r\nLPUSH\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(name), name, len(raw), raw)
            sock, reader = conn.sock, conn.reader
            if sock is not None and reader is not None:
                reply = self._lpush_on(conn, sock, reader, packed)
            else:
                conn.send_packed_command([packed], check_health=False)  # connects first if need be
                reply = conn.read_response()
        except (resp.ConnectionError, resp.TimeoutError, OSError):
            conn.disconnect()
            self.client.lpush(key, raw)  # the client's retry policy decides from here
            return
        if isinstance(reply, resp.ResponseError):
            raise reply

    @staticmethod
    def _lpush_on(conn: resp.Connection, sock: socket.socket, reader: Any, packed: bytes) -> Any:
        """The packed LPUSH on the connection's socket; a reply that is just ``:N`` is taken as it
        comes (the connection's send and read wrappers were ~4 us of a ~30 us ``delay()``).
        Anything else read (an error line, a reply split across reads) goes to the connection's
        own reader, parsed as any reply; a closed socket is a ``ConnectionError``, a timeout the
        socket's (an ``OSError``)."""
        try:
            sock.sendall(packed)
            data = sock.recv(256)  # a ":N" reply is a few bytes; the rest of a longer one stays for the reader
        except BaseException:
            # Cut off mid-command or before its reply (a soft time limit, a gevent timeout, ^C):
            # the connection is out of step, so it goes.
            conn.disconnect()
            raise
        if data[:1] == b":" and data.find(b"\r\n") == len(data) - 2:
            return None
        if not data:
            raise resp.ConnectionError("Connection closed by server.")
        reader.feed(data)
        return conn.read_response()

    def publish_many(self, items: Sequence[tuple[str, bytes, int | None]], chunk: int = 1000) -> None:
        """One round trip; each run of messages for the same list is one multi-value LPUSH, which
        leaves them in the same order as that many single LPUSHes (consumers pop the first one first)."""
        pipe = self.client.pipeline(transaction=False)
        key: str | None = None
        batch: list[bytes] = []
        for queue, raw, priority in items:
            target = priority_key(queue, priority)
            if target != key or len(batch) >= chunk:
                if key is not None and batch:
                    pipe.lpush(key, *batch)
                key, batch = target, []
            batch.append(raw)
        if key is not None and batch:
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

        Pending acks ride in the same round trip. Every message leaves its queue inside a script
        that records it in the same step, or, when idle, by a blocking ``BLMOVE`` into a staging
        list of ours that the reaper also empties: a worker that dies (or loses its connection)
        right after the server popped loses nothing.

        Why not ``BRPOP`` on every list, as kombu does: what it pops exists only in its reply until
        a second command records it. ``BLMOVE`` blocks on one list only, so an idle worker blocks
        on one queue's main list at a time (rotating across queues) for ``IDLE_SLICE`` at most,
        and each wake-up runs FETCH over every list in serving order: a message on the watched
        list starts at once, one in another queue or priority bucket within ``IDLE_SLICE``.

        A fetch whose reply never came (reset, timeout) is remembered by its tag prefix: its
        script may have run anyway, after we gave up; ``reconcile`` hands such messages back.
        """
        inflight = INFLIGHT + owner
        keys = self._keys(queues)
        with self._fetch_lock:
            if timeout <= 0 or not queues:
                return self._fetch_script(inflight, owner, keys, limit, "", acks)
            block = queues[self._turn % len(queues)]
            self._turn += 1
            arm = STAGE + owner + SEP + block
            blmove = ("BLMOVE", block, arm, "RIGHT", "LEFT", min(max(timeout, 0.01), IDLE_SLICE))
            if self._dry and not acks:
                # Idle, one task at a time: a FETCH first would come back empty nearly every time
                # (a round trip a task, in the worker and on the server). The staging list is armed
                # (SADD) in the same write before the block, as that FETCH would have, so a
                # message the BLMOVE moves is never in a list the reaper does not know.
                got = self._fetch_script(
                    inflight, owner, keys, limit, "", (), ahead=(("SADD", STAGES + owner, arm), blmove)
                )
            else:
                got = self._fetch_script(inflight, owner, keys, limit, arm, acks)
                if not got:
                    # The idle block and the FETCH that records what it staged, in one write: the
                    # server runs the FETCH the moment the BLMOVE returns (a blocked client's next
                    # command waits in its buffer), so a task sent to an idle worker reaches it one
                    # round trip sooner. An error from the BLMOVE is raised as before, and the
                    # FETCH's prefix is counted as failed, so ``reconcile`` hands back what it took.
                    got = self._fetch_script(inflight, owner, keys, limit, "", (), ahead=(blmove,))
            self._dry = len(got) < limit
            return got

    def _fetch_script(
        self,
        inflight: str,
        owner: str,
        keys: list[str],
        limit: int,
        arm: str,
        acks: Sequence[str],
        ahead: tuple[tuple[Any, ...], ...] = (),
    ) -> list[Delivery]:
        """The FETCH script, after the commands ``ahead`` (sent in the same write)."""
        prefix = f"{self.tag_base}{next(self._seq)}"
        sha = self._scripts["FETCH"].sha
        fetch = ("EVALSHA", sha, 2 + len(keys), inflight, STAGES + owner, *keys, limit, prefix, arm, *acks)
        return _deliveries(self._guarded_call(prefix, *ahead, fetch))

    def _guarded_call(self, prefix: str, *commands: tuple[Any, ...]) -> Any:
        """``_fetch_call``, with the fetch's prefix remembered when it fails: its script may have
        run anyway, and ``reconcile`` hands back what it took."""
        try:
            return self._fetch_call(*commands)
        except BaseException:
            with self._orphan_lock:
                self._failed.append(prefix)
            raise

    def forsake(self, tags: Sequence[str]) -> None:
        """Fetched messages this process will not run after all (it failed while sorting them):
        the next ``reconcile`` hands them back."""
        with self._orphan_lock:
            self._forsaken.extend(tags)

    def reconcile(self, owner: str) -> int:
        """Hand back what ``owner``'s in-flight hash holds but this process never received (a fetch
        whose reply was lost) or gave up: without this they would sit there while the worker
        lives, never run and never reaped. Returns how many went back to their queues."""
        with self._orphan_lock:
            failed, forsaken = set(self._failed), self._forsaken[:]
        if not failed and not forsaken:
            return 0
        inflight = INFLIGHT + owner
        tags = [as_text(t) for t in self.client.hkeys(inflight)]
        orphans = [t for t in tags if t.partition(".")[0] in failed]
        moved = int(self._scripts["REQUEUE"](keys=[inflight], args=orphans + forsaken)) if orphans or forsaken else 0
        with self._orphan_lock:
            del self._forsaken[: len(forsaken)]
        return moved

    def _fetch_conn(self) -> resp.Connection:
        conn = self._fconn
        if conn is None or self._fpid != forks.pid:  # a forked child makes its own
            conn = self._fconn = self._conns.make()
            self._fpid = forks.pid
        return conn

    def _fetch_call(self, *commands: tuple[Any, ...]) -> Any:
        """Commands on the consumer's own connection in one write, past the client's checkout and
        retries; the last one's reply. Every reply is read before an error reply is raised (the
        first), so the connection stays in step; a last command the server has no script for (a
        restart forgot it) is sent again once the script is loaded."""
        conn = self._fetch_conn()
        try:
            _send(conn, *commands)
            replies = [read_reply(conn) for _ in commands]
            if isinstance(replies[-1], NoScriptError):
                self.client.script_load(lua.FETCH)
                _send(conn, commands[-1])
                replies[-1] = read_reply(conn)
        except (resp.ConnectionError, resp.TimeoutError, OSError):
            conn.disconnect()
            raise
        for reply in replies:
            if isinstance(reply, resp.ResponseError):
                raise reply
        return replies[-1]

    def ack(self, owner: str, tags: Sequence[str]) -> None:
        if tags:
            self.client.hdel(INFLIGHT + owner, *tags)

    def claim(self, owner: str, tag: str, take: bool, acks: Sequence[str] = (), fresh: float | None = None) -> bool:
        """The fence before a job starts: is this message still ours? ``take`` (early ack) also
        removes the record, so a worker killed mid-task never has it run again. False means it was
        taken back while this worker looked dead, and it runs (or ran) elsewhere. Given ``fresh``,
        a late ack is ours only while the owner's heartbeat is younger than that many seconds on
        the server's clock; an older one raises ``LeaseLapsed`` (see ``CLAIM``)."""
        keys = [INFLIGHT + owner, CLAIMS + owner, OWNERS]
        args = ["1" if take else "0", tag, owner, "" if fresh is None else int(fresh * 1000), *acks]
        script = self._scripts["CLAIM"]
        conn = self._conns.get()  # once per task start: this thread's own connection, as ``publish``
        try:
            conn.send_packed_command(pack(("EVALSHA", script.sha, len(keys), *keys, *args)), check_health=False)
            reply = conn.read_response()
        except (resp.ConnectionError, resp.TimeoutError, OSError):
            conn.disconnect()
            reply = script(keys=keys, args=args)  # the client's retries; a retried take still answers 1
        except NoScriptError:
            reply = script(keys=keys, args=args)  # loads it
        if isinstance(reply, resp.ResponseError):
            raise reply
        if reply == LAPSED:
            raise LeaseLapsed(f"the broker last heard this worker's heartbeat {fresh or 0:g}s or more ago")
        return bool(reply)

    def requeue(self, owner: str, tags: Sequence[str]) -> int:
        if not tags:
            return 0
        return int(self._scripts["REQUEUE"](keys=[INFLIGHT + owner], args=list(tags)))

    def requeue_all(self, owner: str) -> int:
        return int(self._scripts["REQUEUE_ALL"](keys=self._owned(owner), args=[""]))

    def hand_back(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Put messages we no longer own in the ledger back at the front of their lists."""
        if items:
            pipe = self.client.pipeline(transaction=False)
            for queue_key, raw in items:
                pipe.rpush(queue_key, mark_redelivered(raw))
            pipe.execute()

    def for_child(self) -> RedisBroker:
        """The same server for a forked pool process that fetches and settles for itself: a new
        client (this object may have been forked mid-call, a lock held), no publishing extras."""
        return RedisBroker(self.url)

    def held(self, owner: str, tag: str) -> Delivery | None:
        """A message in ``owner``'s in-flight record, or None if it is not there (settled, or taken
        back while the owner looked dead)."""
        found = self.client.hget(INFLIGHT + owner, tag)
        if found is None:
            return None
        key, _, raw = as_bytes(found).partition(SEP.encode())
        return Delivery(tag, key.decode(), raw)

    def inflight_count(self, owner: str) -> int:
        return int(self.client.hlen(INFLIGHT + owner))

    # -- delayed messages ---------------------------------------------------------------------
    def defer(self, owner: str, tag: str, eta: float) -> None:
        self._scripts["DEFER"](keys=[INFLIGHT + owner, DELAYED], args=[tag, repr(eta)])

    def promote_due(self, now: float, limit: int = 500) -> tuple[int, float | None]:
        moved, nxt = self._scripts["PROMOTE"](keys=[DELAYED], args=[repr(now), limit])
        return int(moved), (float(nxt) if nxt else None)

    def delayed_count(self) -> int:
        return int(self.client.zcard(DELAYED))

    def held_etas(self) -> list[tuple[float, Delivery]]:
        """None: an ETA task waits in the shared delayed set, not in any worker (see ``defer``)."""
        return []

    # -- owner liveness -----------------------------------------------------------------------
    def heartbeat(self, owner: str, now: float, slack: float = 2.0, timeout: float | None = None) -> bool:
        """Renew ``owner``'s lease on the server's clock (``now`` is not used: a worker's clock is
        not the judge). False if the owner had been reaped (or never beat): what it held before
        was handed back. ``slack``: the longest pause between ownership scripts that is normal.
        ``timeout``: beat on a connection of its own that gives up waiting for a reply after that
        long, so a lost reply costs a retry, not the lease."""
        client = self.client
        if timeout is not None:
            if self._beat_client is None or self._beat_pid != os.getpid():
                self._beat_client = client_from_url(self.url, socket_timeout=timeout, socket_connect_timeout=timeout)
                self._beat_pid = os.getpid()
            client = self._beat_client
        beat = self._scripts["BEAT"]
        return not int(beat(keys=[OWNERS, CLOCK], args=[owner, int(slack * 1000)], client=client))

    def retire(self, owner: str) -> None:
        """Leave for good; anything still recorded or staged goes back first."""
        self._scripts["REQUEUE_ALL"](keys=self._owned(owner), args=[owner])

    @staticmethod
    def _owned(owner: str) -> list[str]:
        return [INFLIGHT + owner, STAGES + owner, OWNERS, CLAIMS + owner]

    def reap(self, now: float, timeout: float, slack: float = 2.0) -> int:
        """Hand back the messages of owners silent for ``timeout`` by the server's clock, not
        counting time when the server itself (or every worker) was stalled."""
        args: list[str | int] = [int(timeout * 1000), INFLIGHT, STAGES, int(slack * 1000), CLAIMS]
        return int(self._scripts["REAP"](keys=[OWNERS, CLOCK], args=args))

    # -- dead letters -------------------------------------------------------------------------
    def dead_letter(self, owner: str | None, tag: str | None, letter: DeadLetter) -> None:
        meta = {k: v for k, v in letter.as_dict().items() if k not in ("id", "size")}
        self._scripts["DEAD"](
            keys=[INFLIGHT + (owner or "-"), DEAD_RAW, DEAD_META, DEAD_INDEX],
            args=[tag or "", letter.id, letter.raw, json.dumps(meta), repr(letter.time)],
        )

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        ids = [as_text(i) for i in self.client.zrevrange(DEAD_INDEX, 0, max(limit, 1) - 1)]
        return [letter for i in ids if (letter := self.dead_letter_get(i)) is not None]

    def dead_letter_count(self) -> int:
        return int(self.client.zcard(DEAD_INDEX))

    def dead_letter_get(self, letter_id: str) -> DeadLetter | None:
        raw, meta = self.client.hmget(DEAD_RAW, letter_id), self.client.hget(DEAD_META, letter_id)
        if raw[0] is None or meta is None:
            return None
        return DeadLetter(id=letter_id, raw=as_bytes(raw[0]), **json.loads(meta))

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

    def queue_consumers(self, queue: str) -> int | None:
        """Unknown here: a Redis list does not know who pops it (the console asks the workers)."""
        return None

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
            sep = b"" if raw[end : end + 1] == b"}" else b", "
            return raw[:end] + b'"redelivered": true' + sep + raw[end:]
    return raw


def now() -> float:
    return time.time()


def _send(conn: resp.Connection, *commands: tuple[Any, ...]) -> None:
    """Commands packed by hiredis straight from their arguments, in one write."""
    conn.send_packed_command(b"".join(_pack_command(args) for args in commands))


def _deliveries(flat: list[bytes]) -> list[Delivery]:
    """FETCH's reply, (tag, queue key, message) flattened, as deliveries."""
    return [Delivery(flat[i].decode(), flat[i + 1].decode(), flat[i + 2]) for i in range(0, len(flat), 3)]
