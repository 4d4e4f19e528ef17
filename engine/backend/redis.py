"""Celery's Redis result backend format: ``SETEX`` and ``PUBLISH`` of the same JSON.

Writers must publish as well as set, because Celery's ``AsyncResult.get()`` waits on the
key's channel (celery-wire.md §6); readers subscribe *before* reading, so no result slips
between the read and the wait.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import redis

from engine import aio, asyncrun
from engine.backend.keyvalue import BaseKeyValueStoreBackend
from engine.backend.subscriptions import ResultSubscriptions
from engine.protocol.results import task_key
from engine.redisconn import ThreadConnections, client_from_url, guarded
from engine.serialization import json_dumps, json_loads


class RedisBackend(BaseKeyValueStoreBackend):
    def __init__(self, url: str, expires: float | None = 86400) -> None:
        self.url = url
        self.expires = int(expires) if expires else None
        self.client = client_from_url(url)
        self._conns = ThreadConnections(self.client)  # store's per-thread connection
        self._pooled = _greenlet_threads()  # under gevent, stores borrow from the pool instead
        self.result_consumer = ResultSubscriptions(self.client)  # Celery's name for it

    def ensure_chords_allowed(self) -> None:
        """Celery's check before a chord starts: Redis joins chords natively, so always allowed."""

    def store(self, task_id: str, meta: dict[str, Any]) -> None:
        if asyncrun.bridged():  # on the asyncio pool's loop: pipelined with other tasks' stores, no stall
            asyncrun.resolve(aio.astore(self, task_id, meta), interruptible=False)
            return
        key = task_key(task_id)
        data = json_dumps(meta)
        # SET then PUBLISH, in order on one connection (the value is there before subscribers hear
        # of it), sent together on this thread's own connection: no MULTI/EXEC, no pipeline object.
        first = ("SETEX", key, self.expires, data) if self.expires else ("SET", key, data)
        if self._pooled:
            self._store_pooled(first, key, data)
            return
        conn = self._conn()
        try:
            conn.send_packed_command(conn.pack_commands([first, ("PUBLISH", key, data)]))
            errors = [reply for reply in (_reply(conn), _reply(conn)) if isinstance(reply, redis.ResponseError)]
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            conn.disconnect()
            self._store_pooled(first, key, data)  # redis-py's retries from here
            return
        if errors:  # both replies read first, so the connection stays in step
            raise errors[0]

    def _store_pooled(self, first: tuple[Any, ...], key: str, data: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command(*first)
        pipe.publish(key, data)
        guarded(self.url, pipe.execute)

    def _conn(self) -> redis.connection.AbstractConnection:
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


def _greenlet_threads() -> bool:
    """Under gevent's monkey-patching a thread is a greenlet: a connection for each would be one per
    task in flight (about 40 KB each), where a shared pool needs only as many as stores at once."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("threading"))


def _reply(conn: redis.connection.AbstractConnection) -> Any:
    try:
        return conn.read_response()
    except redis.ResponseError as exc:
        return exc
