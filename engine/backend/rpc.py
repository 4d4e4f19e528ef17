"""``rpc://``: results travel back as messages to the sending client's own reply queue, as Celery's
RPC backend sends them, so a Celery worker answers our client and ours answers Celery's.

The wire: the client names its queue in each task's ``reply_to`` property; the worker publishes
the result document (the same JSON meta the Redis backend stores: ``status``, ``result``,
``traceback``, ``children``, ``date_done``, ``task_id``) through the default exchange with that
queue as routing key and the task's ``correlation_id``. Nothing is stored server-side: a result
is read once, by the process that sent the task (``AsyncResult.get`` elsewhere never sees it).

Our reply queue is not auto-delete (Celery's is): a client that stops consuming between two
``get()`` calls must not have the queue, and the results already in it, deleted under it. It
expires (``x-expires``) after ``result_expires`` without use instead. Results the client receives
for other tasks are kept in memory until asked for, as Celery does.

The worker learns where to reply from the running task's request, or, for outcomes stored outside
a run (revoked or expired before it ran, its process lost), from the message's own properties,
which the worker passes as ``reply``: the client's ``get()`` then raises at once, as it does with
Celery's RPC backend. Only an outcome stored with neither (a store by hand, out of any worker) has
nowhere to go and is dropped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import kombu

from engine import log as task_log
from engine import states
from engine.broker.amqp import UNREACHABLE, connected, drain_events, open_connection
from engine.config import unreachable_line
from engine.exceptions import BrokerUnavailable, one_line
from engine.serialization import json_dumps, json_loads

if TYPE_CHECKING:
    from engine.backend.base import Reply

log = logging.getLogger("engine.backend")
DEFAULT_EXPIRES = 86400.0  # seconds an unused reply queue lives when result_expires is off
RECONNECT_PAUSE = 1.0  # seconds between attempts to consume replies again while RabbitMQ is away
SLICE = 1.0  # seconds one wait for replies holds the consumer (other threads' waits go between)


class RpcBackend:
    def __init__(self, url: str, broker_url: str, expires: float | None = 86400) -> None:
        self.url = url
        self.broker_url = broker_url
        self.expires = float(expires) if expires else DEFAULT_EXPIRES
        self._lock = threading.RLock()  # the reply consumer, one thread at a time
        self._plock = threading.Lock()  # the publishing connection
        self._reset()

    def _reset(self) -> None:
        """A fresh process (a fork) has its own reply queue and connections."""
        self._pid = os.getpid()
        self.oid = str(uuid.uuid4())
        self._conn: kombu.Connection | None = None
        self._consumer: kombu.Consumer | None = None
        self._publisher: kombu.Connection | None = None
        self._metas: dict[str, dict[str, Any]] = {}

    def _forked(self) -> None:
        if os.getpid() != self._pid:
            self._reset()

    def _unavailable(self, exc: BaseException) -> BrokerUnavailable:
        return BrokerUnavailable(f"rpc:// results: {unreachable_line(str(self.broker_url), one_line(exc))}")

    # -- the client -----------------------------------------------------------------------------
    def queue(self) -> kombu.Queue:
        return kombu.Queue(
            self.oid,
            kombu.Exchange(""),
            routing_key=self.oid,
            durable=False,
            auto_delete=False,
            queue_arguments={"x-expires": int(self.expires * 1000)},
        )

    def reply_to(self) -> str:
        """The reply queue, consumed from before the first task naming it is sent."""
        self._forked()
        with self._lock:
            self._consuming()
        return self.oid

    def _consuming(self) -> None:
        if self._consumer is not None:
            return
        try:
            self._conn = connected(open_connection(self.broker_url), self.broker_url)
            self._consumer = kombu.Consumer(
                self._conn.default_channel, [self.queue()], callbacks=[self._on_reply], accept=["json"]
            )
            self._consumer.consume()
        except UNREACHABLE as exc:
            self._drop()
            raise self._unavailable(exc) from None

    def _drop(self) -> None:
        conn, self._conn, self._consumer = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # already gone
                log.debug("ignored while closing the reply connection", exc_info=True)

    def _on_reply(self, body: Any, message: Any) -> None:
        meta = body if isinstance(body, dict) else json_loads(message.body)
        task_id = meta.get("task_id") or message.properties.get("correlation_id")
        if task_id:
            known = self._metas.get(task_id)
            # A late STARTED must not hide a result already here.
            if not (
                known and known.get("status") in states.READY_STATES and meta.get("status") not in states.READY_STATES
            ):
                self._metas[task_id] = meta
        message.ack()

    def _drain(self, timeout: float) -> None:
        with self._lock:
            self._consuming()
            assert self._conn is not None
            if (exc := drain_events(self._conn, timeout)) is not None:
                self._drop()  # the queue and what is in it stay: consumed again on the next call
                raise self._unavailable(exc) from None

    def get_meta(self, task_id: str) -> dict[str, Any] | None:
        self._forked()
        self._drain(0.0)
        while True:  # whatever else is already buffered
            before = len(self._metas)
            self._drain(0.0)
            if len(self._metas) == before:
                return self._metas.get(task_id)

    def wait(self, task_id: str, timeout: float | None) -> dict[str, Any] | None:
        self._forked()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            meta = self._metas.get(task_id)
            if meta and meta.get("status") in states.READY_STATES:
                return meta
            left = SLICE if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return meta
            try:
                self._drain(min(left, SLICE))
            except BrokerUnavailable as exc:
                # RabbitMQ restarting: consume (and so redeclare the queue) again while time is left.
                if deadline is not None and time.monotonic() + RECONNECT_PAUSE >= deadline:
                    raise
                log.warning("waiting for %s: %s (reconnecting)", task_id, exc)
                time.sleep(RECONNECT_PAUSE)

    def forget(self, task_id: str) -> None:
        self._metas.pop(task_id, None)

    # -- the worker -------------------------------------------------------------------------------
    def store(self, task_id: str, meta: dict[str, Any], reply: Reply | None = None) -> None:
        """Publish ``meta`` to the reply queue the task's client named (confirmed): ``reply`` from
        its message, else the request of the task running in this thread."""
        reply_to, correlation_id = reply if reply is not None else self._running_reply(task_id)
        if not reply_to:
            log.debug("no reply queue for %s: its outcome is not sent (rpc://)", task_id)
            return
        correlation_id = correlation_id or task_id
        body = json_dumps(meta)
        for attempt in (1, 2):
            try:
                with self._plock:
                    self._publish(reply_to, correlation_id, body)
                return
            except UNREACHABLE as exc:
                with self._plock:
                    publisher, self._publisher = self._publisher, None
                if publisher is not None:
                    publisher.release()
                if attempt == 2:
                    raise self._unavailable(exc) from None

    @staticmethod
    def _running_reply(task_id: str) -> tuple[str, str]:
        running = task_log.running_request()
        if running is None or getattr(running, "id", None) != task_id:
            return "", ""
        return getattr(running, "reply_to", None) or "", getattr(running, "correlation_id", None) or ""

    def _publish(self, reply_to: str, correlation_id: str, body: str) -> None:
        self._forked()
        if self._publisher is None:
            self._publisher = open_connection(self.broker_url, confirm_publish=True)
        producer = kombu.Producer(self._publisher.default_channel, auto_declare=False)
        producer.publish(
            body,
            exchange="",
            routing_key=reply_to,
            correlation_id=correlation_id,
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=1,  # Celery's result_persistent = False: a reply outlives no restart
            retry=False,
        )

    def close(self) -> None:
        with self._lock:
            self._drop()
        with self._plock:
            publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.release()
