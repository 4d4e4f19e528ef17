"""Celery's Redis result backend format: ``SETEX`` and ``PUBLISH`` of the same JSON.

Writers must publish as well as set, because Celery's ``AsyncResult.get()`` waits on the
key's channel (celery-wire.md §6); readers subscribe *before* reading, so no result slips
between the read and the wait.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine import resp, states
from engine.backend.chord import ChordJoin
from engine.backend.keyvalue import BaseKeyValueStoreBackend
from engine.backend.subscriptions import ResultSubscriptions
from engine.protocol.results import encode_exception, task_key
from engine.redisconn import ThreadConnections, client_from_url, guarded
from engine.resp.client import read_reply
from engine.serialization import json_dumps, json_loads

if TYPE_CHECKING:
    from engine.app import App
    from engine.backend.base import Reply
    from engine.backend.held import HeldResults


class RedisBackend(BaseKeyValueStoreBackend):
    compression = None  # results are stored as plain JSON: ``result_compression`` is never applied here

    def __init__(self, url: str, expires: float | None = 86400, app: App | None = None) -> None:
        self.url = url
        self.expires = int(expires) if expires else None
        self.app = app  # its settings (failure and chord TTLs, chord ordering) are read when used
        self.client = client_from_url(url)
        self._conns = ThreadConnections(self.client)  # store's per-thread connection
        self._pooled = _greenlet_threads()  # under gevent, stores borrow from the pool instead
        self.result_consumer = ResultSubscriptions(self.client)  # Celery's name for it
        self.held: HeldResults | None = None  # set in a work-sharing child (``engine.backend.held``)

    # -- Celery's expiry settings, read from the app when used ---------------------------------
    def _setting(self, name: str) -> Any:
        return self.app.conf.get(name) if self.app is not None else None

    @property
    def failure_expires(self) -> int | None:
        """``result_failure_expires``: how long a FAILURE is kept (``result_expires`` when unset)."""
        value = self._setting("result_failure_expires")
        return self.expires if value is None else _seconds(value)

    @property
    def chord_expires(self) -> int | None:
        """``result_chord_expires``: how long a chord's join keys live (``result_expires`` when unset)."""
        value = self._setting("result_chord_expires")
        return self.expires if value is None else _seconds(value)

    @property
    def _chord_result_expires(self) -> int | None:
        """A saved header ``GroupResult`` is read by users too: never kept less than ``result_expires``."""
        chord, own = self.chord_expires, self.expires
        return max(chord, own) if chord and own else None

    @property
    def chord_ordered(self) -> bool:
        """``result_backend_transport_options['result_chord_ordered']``: the join list a sorted set
        (header order, the default) or a plain list (arrival order), as Celery's."""
        options = self._setting("result_backend_transport_options") or {}
        return bool(options.get("result_chord_ordered", True))

    def ttl_for(self, meta: dict[str, Any]) -> int | None:
        """The key's lifetime for this meta: a FAILURE keeps ``result_failure_expires`` (Celery)."""
        return self.failure_expires if meta.get("status") == states.FAILURE else self.expires

    def ensure_chords_allowed(self) -> None:
        """Celery's check before a chord starts: Redis joins chords natively, so always allowed."""

    def store(self, task_id: str, meta: dict[str, Any], reply: Reply | None = None) -> None:
        asyncrun = sys.modules.get("engine.asyncrun")  # not loaded: not on the asyncio pool's loop
        if asyncrun is not None and asyncrun.bridged():  # pipelined with other tasks' stores, no stall
            from engine import aio

            asyncrun.resolve(aio.astore(self, task_id, meta), interruptible=False)
            return
        key = task_key(task_id)
        data = json_dumps(meta)
        # SET then PUBLISH, in order on one connection (the value is there before subscribers hear
        # of it), sent together on this thread's own connection: no MULTI/EXEC, no pipeline object.
        ttl = self.ttl_for(meta)
        first = ("SETEX", key, ttl, data) if ttl else ("SET", key, data)
        if self._pooled:
            self._store_pooled(first, key, data)
            return
        try:
            errors = self.send_stores([_set_and_publish(key, data, ttl)])
        except (resp.ConnectionError, resp.TimeoutError, OSError):
            self._store_pooled(first, key, data)  # the client's retries from here
            return
        if errors[0] is not None:
            raise errors[0]

    def uses_pool(self) -> bool:
        """Stores borrow pooled connections (gevent) rather than each thread's own."""
        return self._pooled

    def packed_store(self, task_id: str, meta: dict[str, Any]) -> bytes:
        """``store``'s commands for this result, packed, for ``send_stores`` (``HeldResults``)."""
        return _set_and_publish(task_key(task_id), json_dumps(meta), self.ttl_for(meta))

    def send_stores(self, packed: Sequence[bytes]) -> list[resp.ResponseError | None]:
        """Packed stores in one write on this thread's connection, every reply read (so the
        connection stays in step): each store's error, or None. A connection error disconnects and
        raises: none of them is known to be stored."""
        conn = self._conn()
        try:
            conn.send_packed_command(list(packed))
            replies = [(read_reply(conn), read_reply(conn)) for _ in packed]
        except (resp.ConnectionError, resp.TimeoutError, OSError):
            conn.disconnect()
            raise
        return [next((r for r in pair if isinstance(r, resp.ResponseError)), None) for pair in replies]

    def _store_pooled(self, first: tuple[Any, ...], key: str, data: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command(*first)
        pipe.publish(key, data)
        guarded(self.url, pipe.execute)

    def _conn(self) -> resp.Connection:
        return self._conns.get()

    def get_meta(self, task_id: str) -> dict[str, Any] | None:
        data = guarded(self.url, lambda: self.client.get(task_key(task_id)))
        return json_loads(data) if data else None

    def wait(self, task_id: str, timeout: float | None) -> dict[str, Any] | None:
        return guarded(self.url, lambda: self.result_consumer.wait(task_id, timeout, self.get_meta))

    def on_task_call(self, producer: Any, task_id: str) -> None:
        """Celery's hook before a client sends a task whose result it keeps: listen for it now."""
        self.result_consumer.watch(task_id)

    def cancel_for(self, task_id: str) -> None:
        """Stop listening for ``task_id`` (its ``AsyncResult`` is gone); never blocks."""
        self.result_consumer.cancel(task_id)

    # -- Celery's chord calls on the backend: thin entries onto the join in ``chord`` ------------
    def chord_join(self) -> ChordJoin:
        return ChordJoin(self.client, self.chord_expires or 86400, ordered=self.chord_ordered)

    def set_chord_size(self, group_id: str, chord_size: int) -> None:
        """Written by the client just before it sends the header (a new run of a frozen chord too)."""
        self.chord_join().set_size(group_id, chord_size)

    def apply_chord(self, header_result_args: Sequence[Any], body: Any, **_: Any) -> None:
        """Celery's hook as a chord's header is sent: a header holding groups is saved under the group
        key (for ``result_chord_expires``), so the body gets their nested shape back."""
        from engine.group_result import GroupResult

        group_id, results = header_result_args[0], list(header_result_args[1])
        if any(isinstance(r, GroupResult) for r in results):
            header = GroupResult(group_id, results, app=self.app)
            document = json_dumps({"result": header.as_tuple()})
            key = self.get_key_for_group(group_id)
            ttl = self.chord_expires
            guarded(self.url, lambda: self.client.set(key, document, ex=ttl or None))

    def on_chord_part_return(self, request: Any, state: str, result: Any, **_: Any) -> None:
        """Count one finished header task into its chord; the one that completes it starts the body
        (``request.chord``), as the worker does. A saved header keeps the chord's lifetime."""
        task_id, group_id = getattr(request, "id", None), getattr(request, "group", None)
        if not task_id or not group_id or self.app is None:
            return
        from engine.chord_steps import _part_done

        if state in states.EXCEPTION_STATES and isinstance(result, BaseException):
            result = encode_exception(result)
        index = getattr(request, "group_index", None) or 0
        body: Any = getattr(request, "chord", None)  # None: recorded only (a body cannot start)
        _part_done(self.app, group_id, task_id, index, body, state, result)
        ttl = self._chord_result_expires
        if ttl:
            guarded(self.url, lambda: self.client.expire(self.get_key_for_group(group_id), ttl))

    def forget(self, task_id: str) -> None:
        self.client.delete(task_key(task_id))
        self.result_consumer.cancel(task_id)

    # -- Celery's key/value surface (``BaseKeyValueStoreBackend``) ---------------------------
    def get(self, key: str) -> bytes | None:
        data: Any = guarded(self.url, lambda: self.client.get(key))
        return data  # type: ignore[no-any-return]

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        data: Any = guarded(self.url, lambda: self.client.mget(list(keys)))
        return data  # type: ignore[no-any-return]

    def set(self, key: str, value: str) -> None:
        if self.expires:
            self.client.setex(key, self.expires, value)
        else:
            self.client.set(key, value)

    def delete(self, key: str) -> None:
        self.client.delete(key)

    def close(self) -> None:
        self.result_consumer.close()
        self._conns.close()
        self.client.close()


def _seconds(value: Any) -> int:
    """An expiry setting (seconds, or a ``timedelta``) as whole seconds."""
    seconds = value.total_seconds() if hasattr(value, "total_seconds") else value
    return int(seconds)


def _greenlet_threads() -> bool:
    """Under gevent's monkey-patching a thread is a greenlet: a connection for each would be one per
    task in flight (about 40 KB each), where a shared pool needs only as many as stores at once."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("threading"))


def _set_and_publish(key: str, data: str, ttl: int | None) -> bytes:
    """``SETEX`` (or ``SET``) and ``PUBLISH`` of one value, packed in one step by hand: packing
    each part on its own was a fifth of a stored result's CPU (10 of 50 µs, with redis-py)."""
    name, value = key.encode(), data.encode()
    publish = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(name), name, len(value), value)
    if not ttl:
        return b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n%b" % (len(name), name, len(value), value, publish)
    seconds = b"%d" % ttl
    return b"*4\r\n$5\r\nSETEX\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n%b" % (
        len(name),
        name,
        len(seconds),
        seconds,
        len(value),
        value,
        publish,
    )
