"""A worker's broadcast channels on RabbitMQ, declared as Celery and kombu declare them.

Events go to the ``celeryev`` topic exchange (durable, as Celery's ``event_exchange``); remote
control requests arrive on the ``celery.pidbox`` fanout exchange (transient, kombu's ``Mailbox``)
through a server-named exclusive queue of this worker's, and replies go to the
``reply.celery.pidbox`` direct exchange with the caller's ticket as routing key. So ``celery
inspect``, ``celery control``, ``celery events`` and Flower on RabbitMQ see a tqctl worker.

Revokes and task history are not broadcasts but stored state: they stay on the Redis result
backend (``client``), as on a Redis broker.

The worker's listener expects Redis's pub/sub shape (``subscribe`` → ``get_message``), so the
subscription here gives the same shape; connection failures are raised as ``OSError``, which
the worker's listener and event flushes already treat as "broker away, retry".
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

import amqp.exceptions
import kombu
import kombu.exceptions

from engine.broker.amqp import connected, open_connection
from engine.broker.amqp_wire import Outgoing, envelope
from engine.broker.fanout import RedisFanout

EVENTS = "celeryev"
PIDBOX = "celery.pidbox"
REPLIES = "reply.celery.pidbox"
FAILURES = (amqp.exceptions.AMQPError, kombu.exceptions.KombuError, OSError)


def exchange_for(name: str) -> kombu.Exchange:
    """Celery's own declaration of each exchange (RabbitMQ refuses one that differs)."""
    if name == EVENTS:
        return kombu.Exchange(EVENTS, type="topic")
    if name == PIDBOX:
        return kombu.Exchange(PIDBOX, type="fanout", durable=False, delivery_mode="transient")
    return kombu.Exchange(name, type="direct", durable=False, delivery_mode="transient")


class AmqpFanout(RedisFanout):
    """Broadcasts on RabbitMQ; ``client`` (revokes, history) on the Redis result backend."""

    def __init__(self, amqp_url: str, backend_url: str | None) -> None:
        if backend_url is not None:
            super().__init__(backend_url)
        else:  # tqctl's control commands: broadcasts and replies only, no stored state
            self.url, self.db, self.client = amqp_url, 0, None  # type: ignore[assignment]
        self.amqp_url = amqp_url
        self._local = threading.local()
        self._opened: list[kombu.Connection] = []
        self._lock = threading.Lock()
        self._replies: dict[str, Subscription] = {}

    def _open(self) -> kombu.Connection:
        """A new connection, connected here (kombu's lazy connect would try twice, 2 s apart)."""
        conn = connected(open_connection(self.amqp_url), self.amqp_url)
        with self._lock:
            self._opened.append(conn)
        return conn

    def channel(self, exchange: str, routing_key: str = "") -> str:
        return f"{exchange}/{routing_key}" if routing_key else exchange

    def publish(self, exchange: str, routing_key: str, raw: bytes) -> None:
        self._send(exchange, routing_key, raw)

    def reply(self, oid: str, raw: bytes, exchange: str = REPLIES) -> None:
        self._send(exchange, oid, raw)

    def _send(self, exchange: str, routing_key: str, raw: bytes) -> None:
        message = Outgoing(raw)
        message.properties["delivery_mode"] = 1
        target = exchange_for(exchange)
        for attempt in (1, 2):
            conn: kombu.Connection | None = getattr(self._local, "conn", None)
            kept = conn is not None  # worth one retry (a restart may have killed it); a new one is not
            try:
                if conn is None:
                    conn = self._local.conn = self._open()
                kombu.Producer(conn.default_channel, auto_declare=False).publish(
                    message.body,
                    exchange=target,
                    routing_key=routing_key,
                    declare=[target],
                    content_type=message.content_type,
                    content_encoding=message.content_encoding,
                    headers=message.headers,
                    retry=False,
                    **message.properties,
                )
                return
            except FAILURES as exc:
                self._local.conn = None
                if conn is not None:
                    self._forget(conn)
                if attempt == 2 or not kept:
                    raise ConnectionError(f"RabbitMQ: {exc}") from None

    def subscribe(self, patterns: Iterable[str]) -> Any:
        """A queue of our own bound to each ``exchange/pattern`` (only the pidbox is used): a
        ``Subscription``, which has the two methods of redis-py's ``PubSub`` the worker calls."""
        conn = None
        try:
            conn = self._open()
            return Subscription(conn, [p.split("/", 1) if "/" in p else [p, ""] for p in patterns])
        except FAILURES as exc:
            if conn is not None:
                self._forget(conn)
            raise ConnectionError(f"RabbitMQ: {exc}") from None

    def _forget(self, conn: kombu.Connection) -> None:
        with self._lock:
            if conn in self._opened:
                self._opened.remove(conn)
        _release(conn)

    def bind_reply(self, oid: str, exchange: str = REPLIES) -> str:
        """An exclusive queue bound to ``exchange`` by ``oid`` (kombu's reply queue for a
        ticket), bound before the request goes out so no reply is missed."""
        conn = None
        try:
            conn = self._open()
            self._replies[oid] = Subscription(conn, [[exchange, oid]])
        except FAILURES as exc:
            if conn is not None:
                self._forget(conn)
            raise ConnectionError(f"RabbitMQ: {exc}") from None
        return oid

    def pop_reply(self, queue: str, timeout: float) -> bytes | None:
        found = self._replies[queue].get_message(max(timeout, 0.01))
        return found["data"] if found else None

    def unbind_reply(self, oid: str, exchange: str = REPLIES) -> None:
        subscription = self._replies.pop(oid, None)
        if subscription is not None:
            self._forget(subscription.conn)

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            _release(conn)
        if self.client is not None:
            super().close()


class Subscription:
    """Redis ``PubSub``'s ``get_message``/``close`` over an exclusive, auto-deleted queue."""

    def __init__(self, conn: kombu.Connection, bindings: list[list[str]]) -> None:
        self.conn = conn
        self._got: deque[bytes] = deque()
        channel = conn.channel()
        queue_name, _, _ = channel.queue_declare("", exclusive=True, auto_delete=True)
        for exchange, key in bindings:
            exchange_for(exchange)(channel).declare()
            channel.queue_bind(queue_name, exchange, routing_key=key.replace("*", "#"))
        channel.basic_consume(queue_name, callback=self._on_message, no_ack=True)

    def _on_message(self, message: Any) -> None:
        info, props = message.delivery_info, message.properties
        self._got.append(
            envelope(
                message.body,
                props.get("content_type"),
                props.get("content_encoding"),
                props.get("application_headers"),
                props,
                info.get("exchange") or "",
                info.get("routing_key") or "",
                bool(info.get("redelivered")),
                "",
            )
        )

    def get_message(self, timeout: float = 0.0) -> dict[str, Any] | None:
        if not self._got:
            try:
                self.conn.drain_events(timeout=timeout)
            except TimeoutError:
                return None
            except FAILURES as exc:
                _release(self.conn)  # the listener subscribes afresh
                raise ConnectionError(f"RabbitMQ: {exc}") from None
        return {"type": "message", "data": self._got.popleft()} if self._got else None

    def close(self) -> None:
        _release(self.conn)


def _release(conn: kombu.Connection) -> None:
    try:
        conn.release()
    except Exception:  # already gone
        pass
