"""The operator's view of a Redis broker, laid out as kombu and tqctl lay it out.

Queues are found from kombu's binding table (``_kombu.binding.<exchange>`` sets) and, for queues
nobody declared, by scanning list keys; a queue is one list per priority step, published with
LPUSH and consumed from the right; ETA tasks wait in tqctl's delayed sorted set as
``<queue key><SEP><message>``. History, failures, revokes and results are on the same server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from engine import resp
from engine.broker.inspect import NotHere, QueueFigures, Sign, as_float, delayed_row, envelope_headers, peek_row
from engine.broker.redis import DELAYED, SEP, RedisBroker
from engine.broker.redis_scripts import RUN_NOW
from engine.history import History
from engine.protocol.results import task_key
from engine.protocol.task import PRIORITY_SEP, PRIORITY_STEPS, priority_key
from engine.redisconn import as_bytes
from engine.serialization import json_dumps

BINDING_PREFIX = "_kombu.binding."
SKIP_EXCHANGES = frozenset({"celeryev", "celery.pidbox", "reply.celery.pidbox"})
NOT_QUEUES = ("tqctl.", "_kombu.", "celery-task-meta", "celeryev")


def queue_of(key: bytes | str) -> str:
    """A priority list's key (``q``, ``q\\x06\\x163``...) → its queue name."""
    text = key.decode(errors="replace") if isinstance(key, bytes) else key
    return text.split(PRIORITY_SEP)[0]


class RedisView:
    discovery_error: str | None = None  # a scan that cannot run lists the declared queues only

    def __init__(self, url: str, client: resp.Client | None = None) -> None:
        self.url = url
        self.broker = RedisBroker(url, client=client) if client is not None else RedisBroker(url)
        self.store = self.broker.client
        self.history: History | None = History(self.store)
        self._seen_lists: set[str] = set()  # queues found by scanning list keys (nobody declared them)

    def close(self) -> None:
        self.broker.close()

    def ping(self) -> None:
        self.store.ping()

    def server(self) -> str:
        info = self.store.info("server")
        kind = "valkey" if "valkey_version" in info else "redis"
        return f"{kind} {info.get('valkey_version') or info.get('redis_version', '?')}"

    # -- queues -----------------------------------------------------------------------------------
    def discover(self) -> None:
        """Queues nobody declared (a client published to a queue no worker consumes) exist only as
        lists: find them by type, skipping our own bookkeeping and kombu's reply queues."""
        try:
            for key in self.store.scan_iter(count=1000, _type="list"):
                name = queue_of(key)
                if not name.startswith(NOT_QUEUES) and "pidbox" not in name:
                    self._seen_lists.add(name)
        except Exception:  # SCAN TYPE needs Redis 6; without it only declared queues are listed
            pass

    def queue_names(self) -> list[str]:
        names: set[str] = set(self._seen_lists)
        keys = list(self.store.scan_iter(match=BINDING_PREFIX + "*", count=1000))
        exchanges = [k.decode()[len(BINDING_PREFIX) :] for k in keys]
        pipe = self.store.pipeline(transaction=False)
        wanted = [e for e in exchanges if e not in SKIP_EXCHANGES and "pidbox" not in e]
        for exchange in wanted:
            pipe.smembers(BINDING_PREFIX + exchange)
        for members in pipe.execute():
            for member in members:
                queue = member.decode(errors="replace").split(PRIORITY_SEP)[-1]
                if queue and not queue.startswith("celeryev.") and "pidbox" not in queue:
                    names.add(queue)
        return sorted(names)

    def queues(self, names: list[str]) -> list[QueueFigures]:
        if not names:
            return []
        pipe = self.store.pipeline(transaction=False)
        for name in names:
            for step in PRIORITY_STEPS:
                key = priority_key(name, step)
                pipe.llen(key)
                pipe.lindex(key, -1)  # LPUSH publishes, consumers pop from the right: -1 is the oldest
        flat = pipe.execute()
        out = []
        per = 2 * len(PRIORITY_STEPS)
        for i, name in enumerate(names):
            chunk = flat[i * per : (i + 1) * per]
            sent = [as_float(envelope_headers(raw).get("sent_at")) for raw in chunk[1::2] if raw]
            known = [s for s in sent if s is not None]
            out.append(QueueFigures(name, sum(int(n) for n in chunk[0::2]), min(known) if known else None))
        return out

    def buckets(self, queue: str) -> list[dict[str, int]]:
        pipe = self.store.pipeline(transaction=False)
        for step in PRIORITY_STEPS:
            pipe.llen(priority_key(queue, step))
        return [{"priority": step, "depth": int(n)} for step, n in zip(PRIORITY_STEPS, pipe.execute(), strict=True)]

    def peek(self, queue: str, limit: int = 100) -> list[dict[str, Any]]:
        """The next messages a worker would take from ``queue``, oldest (next out) first."""
        rows: list[dict[str, Any]] = []
        for step in PRIORITY_STEPS:
            for raw in reversed(self.store.lrange(priority_key(queue, step), -limit, -1)):
                rows.append(peek_row(envelope_headers(as_bytes(raw)), step))
                if len(rows) >= limit:
                    return rows
        return rows

    # -- the delayed set --------------------------------------------------------------------------
    def delayed(self, limit: int = 200) -> tuple[list[dict[str, Any]], int]:
        """ETA/countdown tasks parked in the delayed set, soonest first, and how many there are."""
        pipe = self.store.pipeline(transaction=False)
        pipe.zrange(DELAYED, 0, limit - 1, withscores=True)
        pipe.zcard(DELAYED)
        members, total = pipe.execute()
        rows = []
        for member, score in members:
            key, _, raw = member.partition(SEP.encode())
            rows.append(delayed_row(envelope_headers(raw), float(score), queue_of(key)))
        return rows, int(total)

    def parked(self, task_id: str) -> dict[str, Any] | None:
        """``task_id`` as ``delayed`` lists it, if it waits in the delayed set; else None."""
        for _member, score, key, envelope in self._find_parked(task_id):
            return delayed_row(envelope["headers"], score, queue_of(key))
        return None

    def _find_parked(self, task_id: str) -> Iterator[tuple[bytes, float, bytes, dict[str, Any]]]:
        """(member, eta, queue key, envelope) of each delayed-set entry holding ``task_id``: a scan
        (the set has no index by id) that decodes only the entries whose bytes name it."""
        needle = task_id.encode()
        for member, score in self.store.zscan_iter(DELAYED, count=1000):
            if needle not in member:
                continue
            key, _, raw = member.partition(SEP.encode())
            envelope = json.loads(raw)
            if (envelope.get("headers") or {}).get("id") == task_id:
                yield member, float(score), key, envelope

    def run_now(self, task_id: str, sign: Sign) -> str:
        """Move an ETA task from the delayed set to its queue now (``eta`` cleared); its queue."""
        for member, _score, key, envelope in self._find_parked(task_id):
            envelope["headers"]["eta"] = None
            # One script: queued only if still parked (a worker may have promoted it since the scan).
            moved = self.store.register_script(RUN_NOW)(
                keys=[DELAYED, key], args=[member, sign(json_dumps(envelope).encode())]
            )
            if not moved:
                break
            return queue_of(key)
        raise NotHere(
            f"{task_id} is not in the delayed set: it became due, "
            "or no worker has fetched it yet (it waits in its queue)"
        )

    # -- results ----------------------------------------------------------------------------------
    def result_meta(self, task_id: str) -> dict[str, Any] | None:
        meta = self.store.get(task_key(task_id))
        if not meta:
            return None
        try:
            found = json.loads(meta)
        except ValueError:
            return {"raw": as_bytes(meta).decode(errors="replace")}
        return found if isinstance(found, dict) else {"raw": found}
