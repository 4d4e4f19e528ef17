"""The client's result subscriptions on Redis, as Celery's ``ResultConsumer`` keeps them.

A client subscribes to a task's result channel when it sends the task (``watch``), not only when
it waits: Celery's clients do, and tools and tests that look at ``PUBSUB CHANNELS`` expect it.
The subscription ends when the result has been read (``wait`` got it ready), forgotten, or its
``AsyncResult`` dropped (``cancel``, from ``AsyncResult.__del__``), so a client that never reads
its results does not pile up channels. One pub/sub connection per backend serves every thread:
one waiting thread reads it for all of them, and never holds the lock while it sleeps on the
socket, so sends from other threads (which subscribe) are not held up by a wait.

Why not drop messages on the floor: a subscribed channel whose messages are never read fills the
connection's buffers until the server cuts it, so every operation drains what has arrived first.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from engine import resp, states
from engine.protocol.results import task_key
from engine.resp import PubSub
from engine.serialization import json_loads

Meta = dict[str, Any]
# How long a wait reads the connection before it also reads the stored result again (a publish
# lost while the connection was being re-established must not leave a waiter waiting for ever).
QUIET = 1.0
DISCONNECTED = (resp.ConnectionError, resp.TimeoutError, OSError)


def _ready(meta: Meta | None) -> bool:
    return bool(meta and meta.get("status") in states.READY_STATES)


class ResultSubscriptions:
    """Result channels this process listens on, over one pub/sub connection."""

    def __init__(self, client: resp.Client) -> None:
        self._client = client
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._pubsub: PubSub | None = None
        self._lock = threading.Lock()  # the connection and every table below
        self._changed = threading.Condition(self._lock)
        self._subscribed: set[str] = set()
        self._waiters: dict[str, int] = {}  # key → threads waiting on it now
        self._arrived: dict[str, Meta] = {}  # key → ready meta heard for a waited-on key
        self._deferred: set[str] = set()  # cancels left to whoever holds the lock
        self._reading = False  # one waiting thread reads the connection for all

    @property
    def channels(self) -> frozenset[str]:
        """The result channels subscribed to now."""
        return frozenset(self._subscribed)

    # -- the three calls ----------------------------------------------------------------------
    def watch(self, task_id: str) -> None:
        """Subscribe to ``task_id``'s result before its message is sent. Best effort: a result
        store that is down must not fail the send (a later ``wait`` subscribes again)."""
        try:
            with self._held():
                self._drain()
                self._subscribe(task_key(task_id))
        except DISCONNECTED:
            self._reset()

    def cancel(self, task_id: str) -> None:
        """Stop listening for ``task_id`` unless a thread waits on it. Never blocks and never
        raises: it runs from ``AsyncResult.__del__``, maybe inside this very class (then the lock's
        holder sends the unsubscribe on its way out)."""
        key = task_key(task_id)
        if key not in self._subscribed or os.getpid() != self._pid:
            return
        self._deferred.add(key)
        if self._lock.acquire(blocking=False):
            try:
                self._flush_deferred()
            finally:
                self._lock.release()

    def wait(self, task_id: str, timeout: float | None, read: Callable[[str], Meta | None]) -> Meta | None:
        """The task's meta once ready (or the last one read at ``timeout``); ``read`` reads the
        stored meta. Subscribed before the first read, so no publish slips between the two."""
        key = task_key(task_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        meta: Meta | None = None
        with self._held():
            self._waiters[key] = self._waiters.get(key, 0) + 1
        try:
            self._subscribe_now(key)
            meta = read(task_id)
            while not _ready(meta):
                left = QUIET if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    return meta
                heard = self._next(key, min(left, QUIET))
                meta = heard if heard is not None else read(task_id)
            return meta
        finally:
            with self._held():
                left_waiting = self._waiters.pop(key, 1) - 1
                if left_waiting:
                    self._waiters[key] = left_waiting
                else:
                    self._arrived.pop(key, None)
                    if _ready(meta):
                        self._unsubscribe(key)

    # -- Celery's ResultConsumer names, for code that drives the consumer itself -------------------
    consume_from = watch
    cancel_for = cancel
    start = watch

    def stop(self) -> None:
        self.close()

    @staticmethod
    def _get_key_for_task(task_id: str) -> str:
        return task_key(task_id)

    @property
    def subscribed_to(self) -> set[str]:
        return set(self._subscribed)

    def drain_events(self, timeout: float | None = None) -> None:
        """Handle what arrives within ``timeout`` (a ready result for nobody ends its subscription)."""
        wait = max(timeout or 0.0, 0.0)
        with self._held():
            if self._reading:  # another thread reads for everyone
                self._changed.wait(wait)
                return
            self._reading = True
        try:
            self._read(None, wait)
        finally:
            with self._held():
                self._reading = False
                self._changed.notify_all()

    def close(self) -> None:
        with self._lock:
            pubsub, self._pubsub = self._pubsub, None
            self._subscribed.clear()
        if pubsub is not None:
            pubsub.close()

    # -- under the lock -----------------------------------------------------------------------
    @contextmanager
    def _held(self) -> Iterator[None]:
        if os.getpid() != self._pid:  # a forked child: the parent's connection is not ours
            self._start()
        with self._lock:
            try:
                yield
            finally:
                self._flush_deferred()

    def _connection(self) -> PubSub:
        if self._pubsub is None:
            self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        return self._pubsub

    def _subscribe(self, key: str) -> None:
        if key not in self._subscribed:
            self._connection().subscribe(key)
            self._subscribed.add(key)

    def _subscribe_now(self, key: str) -> None:
        try:
            with self._held():
                self._subscribe(key)
        except DISCONNECTED:
            self._reset()
            with self._held():
                self._subscribe(key)  # once more on a new connection; a second failure is the caller's

    def _unsubscribe(self, key: str) -> None:
        if key not in self._subscribed or self._waiters.get(key):
            return
        self._subscribed.discard(key)
        try:
            self._connection().unsubscribe(key)
        except DISCONNECTED:
            self._drop_connection()

    def _flush_deferred(self) -> None:
        while self._deferred:
            self._unsubscribe(self._deferred.pop())

    def _drain(self) -> bool:
        """Handle every message already arrived, without waiting; True if any was a result."""
        pubsub = self._pubsub
        heard = False
        while pubsub is not None:
            message = pubsub.get_message(timeout=0)
            if message is None:
                return heard
            heard = self._dispatch(message) or heard
        return heard

    def _dispatch(self, message: dict[str, Any]) -> bool:
        if message.get("type") != "message":
            return False
        channel = message.get("channel")
        key = channel.decode() if isinstance(channel, bytes) else str(channel)
        try:
            meta = json_loads(message["data"])
        except ValueError:
            return False
        if not _ready(meta):
            return False
        if self._waiters.get(key):
            self._arrived[key] = meta
            self._changed.notify_all()
        else:  # nobody waits: the stored result is there for a later get, stop listening
            self._unsubscribe(key)
        return True

    def _drop_connection(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._subscribed.clear()  # waiters subscribe again on the next connection
        if pubsub is not None:
            try:
                pubsub.reset()
            except DISCONNECTED:
                pass

    def _reset(self) -> None:
        with self._held():
            self._drop_connection()

    # -- waiting ------------------------------------------------------------------------------
    def _next(self, key: str, timeout: float) -> Meta | None:
        """A ready meta heard for ``key`` within ``timeout``, else None (only once it has passed:
        other keys' messages do not end it early)."""
        end = time.monotonic() + timeout
        while True:
            with self._held():
                while key not in self._arrived and self._reading:
                    if not self._changed.wait(max(end - time.monotonic(), 0.0)):
                        break
                if key in self._arrived:
                    return self._arrived[key]
                left = end - time.monotonic()
                if left <= 0 or self._reading:
                    return None
                self._reading = True
            try:
                self._read(key, left)
            finally:
                with self._held():
                    self._reading = False
                    self._changed.notify_all()

    def _read(self, key: str | None, timeout: float) -> None:
        """Read the connection for everyone until something arrives or ``timeout`` passes; the
        socket is watched without the lock, so other threads subscribe meanwhile."""
        try:
            with self._held():
                if key is not None:
                    self._subscribe(key)  # after a dropped connection
                if self._drain():
                    return
                sock = _socket(self._pubsub)
                connected = self._pubsub is not None
            if not connected:
                time.sleep(min(max(timeout, 0.0), 0.05))
                return
            if sock is None:
                with self._held():
                    if self._pubsub is not None:
                        message = self._pubsub.get_message(timeout=min(max(timeout, 0.0), 0.05))
                        if message is not None:
                            self._dispatch(message)
                return
            _readable(sock, max(timeout, 0.0))
            with self._held():
                self._drain()
        except DISCONNECTED:
            self._reset()
            time.sleep(min(max(timeout, 0.0), 0.05))  # the server is away: no hot loop meanwhile


def _socket(pubsub: PubSub | None) -> Any:
    connection = getattr(pubsub, "connection", None)
    return getattr(connection, "sock", None)


def _readable(sock: Any, timeout: float) -> bool:
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    except (OSError, ValueError, AttributeError):  # closed meanwhile, or no poll(): read it soon
        time.sleep(min(timeout, 0.05))
        return True
