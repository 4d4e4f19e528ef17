"""The AMQP broker (RabbitMQ) through kombu and py-amqp, declared as Celery 5.7 declares.

Each queue ``q`` is a durable queue bound to a durable direct exchange ``q`` with routing key
``q`` (Celery's default queue ``celery`` and its ``task_create_missing_queues``), with
``x-max-priority`` when ``task_queue_max_priority`` is set and ``x-queue-type`` for
``task_default_queue_type = "quorum"``. Tasks are published persistent, to the default exchange
with the queue's name as routing key (as Celery's client does for a direct queue), with publisher
confirms: ``publish`` returns once RabbitMQ has taken the message.

Reliability is RabbitMQ's own: a delivered message stays unacknowledged on the consumer's
channel until it is acked, rejected or requeued, and if the worker dies or its connection drops
RabbitMQ redelivers it (``redelivered`` set). The Redis design's ownership machinery (owner
heartbeats, reaping, reconciling lost fetch replies) has nothing to do here, so those methods are
no-ops or small local equivalents, each saying why.

Countdown/ETA messages spend their delay inside RabbitMQ, in Celery 5.5's native delayed
delivery topology (``engine.broker.amqp_delay``): the client publishes a task due in a second or
more there, and the worker re-routes there (confirmed, then acked) any task that arrives more than
``HOLD`` seconds early, a Celery client's included. Only the last moments are held unacked in the
worker's memory, with the prefetch window raised by one for each, so RabbitMQ's
``consumer_timeout`` (30 min by default) never sees a long-held message.

Dead letters go to a durable queue ``tqctl.dead``: the message as the worker read it, with the
letter's fields as headers. Listing or changing them reads that queue from the head (messages not
taken go back in order when the browsing channel closes): fine for an inbox of hundreds.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar, cast

import amqp
import amqp.exceptions
import amqp.spec
import kombu
import kombu.exceptions

from engine.broker import amqp_delay, amqp_read
from engine.broker.amqp_wire import Outgoing, envelope, to_message
from engine.broker.base import DeadLetter, Delivery, Gathering
from engine.broker.eta_hold import EtaHold
from engine.config import mask_url, unreachable_line
from engine.exceptions import BrokerUnavailable, ImproperlyConfigured, one_line

log = logging.getLogger("engine.broker")
DEAD = "tqctl.dead"
IDLE_PUBLISHERS = 8  # publishing connections kept open between publishes
SLICE = 0.05  # seconds one wait for deliveries holds the consumer's channel (acks wait at most this)
GATHER = 0.005  # seconds to wait for the rest of a delivery already arriving, once one is in hand
CONNECT_TIMEOUT = 5.0
CONFIRM_TIMEOUT = 30.0  # seconds a batch waits for RabbitMQ's confirms
HOLD = 3.0  # seconds: a task due sooner is held in the worker, a later one goes back to RabbitMQ
LETTER_FIELDS = ("queue", "reason", "detail", "time", "task_id", "task_name", "worker")
T = TypeVar("T")
UNREACHABLE: tuple[type[BaseException], ...] = (
    amqp.exceptions.ConnectionError,
    amqp.exceptions.AccessRefused,  # a wrong user or password: the connection is refused at login
    kombu.exceptions.OperationalError,
    OSError,
)


def drain_events(conn: Any, timeout: float) -> BaseException | None:
    """Deliver what arrives within ``timeout`` to the consumers' callbacks; the error when the
    link broke (a closed channel included), None when it only stayed quiet."""
    try:
        conn.drain_events(timeout=timeout)
    except TimeoutError:
        return None
    except (*UNREACHABLE, amqp.exceptions.ChannelError) as exc:
        return exc
    return None


class ConfirmTimeout(BrokerUnavailable):
    """A publish RabbitMQ did not confirm in time: the message's fate is unknown, so it is not retried."""


class AmqpBroker:
    def __init__(self, url: str) -> None:
        self.url = url
        options: dict[str, Any] = getattr(url, "options", {})
        self.max_priority: int | None = options.get("queue_max_priority")
        self.queue_type: str | None = options.get("queue_type")
        # Celery's ``broker_native_delayed_delivery_queue_type``: the delay levels' own type.
        self.delayed_queue_type: str = options.get("delayed_queue_type") or "quorum"
        # How long a publish waits for RabbitMQ's confirm: one that blocks publishers (a memory or
        # disk alarm) or stops answering makes delay() fail in one line instead of hanging.
        self.confirm_timeout = float(options.get("confirm_timeout") or CONFIRM_TIMEOUT)
        if self.delayed_queue_type not in ("classic", "quorum"):
            raise ImproperlyConfigured(
                f"broker_native_delayed_delivery_queue_type must be classic or quorum, not {self.delayed_queue_type!r}"
            )
        # Publishing connections, idle ones kept for the next publish from any thread (a thread
        # per request, as a web server has, must not mean a connection per request).
        self._idle: list[kombu.Connection] = []
        self._plock = threading.Lock()
        # The consumer: one connection and channel, used by one thread at a time under ``_lock``.
        self._lock = threading.RLock()
        # Threads waiting to ack or claim on that channel (``_channel``); the consumer's wait for
        # deliveries holds off while there are any, so RabbitMQ's acks never queue behind it.
        self._turns = threading.Condition(threading.Lock())
        self._waiting = 0
        self._conn: kombu.Connection | None = None
        self._consumer: list[str] | None = None  # our consumer tags on the channel, once consuming
        self._consuming: tuple[str, ...] = ()
        self._gen = 0  # bumped each time the consumer's channel is lost: older tags are void
        self._beat_gen: int | None = None
        self._ready: deque[Delivery] = deque()
        # Every unacked delivery we hold: our tag -> (AMQP delivery tag, the delivery).
        self._held: dict[str, tuple[int, Delivery]] = {}
        self._deferred: EtaHold[Delivery] = EtaHold()
        self._forsaken: list[str] = []
        self._window = 0  # basic_qos prefetch_count now set
        self._base = 0  # the largest fetch asked for: the worker's prefetch
        self._queue_of: dict[str, str] = {}  # consumer tag -> queue name
        # Queues known bound to the delayed-delivery topology (declared once per process).
        self._delay_ready: set[str] = set()
        self._gathering = Gathering()

    # -- connections ----------------------------------------------------------------------------
    def _connection(self, confirm: bool = True) -> kombu.Connection:
        return open_connection(self.url, confirm_publish=confirm)

    def _unavailable(self, exc: BaseException) -> BrokerUnavailable:
        text = one_line(exc)
        if isinstance(exc, amqp.exceptions.AccessRefused):
            if getattr(exc, "method_name", ""):  # a channel's (Queue.declare...): a reserved name or a permission
                return BrokerUnavailable(f"broker {mask_url(str(self.url))} refused it: {text}")
            return BrokerUnavailable(f"broker {mask_url(str(self.url))} refused the login (user or password): {text}")
        return BrokerUnavailable(unreachable_line(str(self.url), text))

    def _guard(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except amqp.exceptions.PreconditionFailed as exc:
            raise ImproperlyConfigured(f"RabbitMQ refused a queue declaration: {exc}") from None
        except UNREACHABLE as exc:
            raise self._unavailable(exc) from None

    @contextmanager
    def _publishing(self, kept: list[bool] | None = None) -> Iterator[kombu.Connection]:
        """An idle publishing connection (or a new one), given back afterwards unless it failed.
        ``kept`` is told whether it was a kept one, from the take itself (another thread may take
        the last idle one between a look and the take)."""
        idle = self._take_idle()
        if kept is not None:
            kept[:] = [idle is not None]
        conn = idle or self._connection()
        try:
            yield conn
        except BaseException:
            _quietly(conn.release)
            raise
        self._give_back(conn)

    def _take_idle(self) -> kombu.Connection | None:
        with self._plock:
            return self._idle.pop() if self._idle else None

    def _give_back(self, conn: kombu.Connection) -> None:
        """Kept for the next publish from any thread, up to ``IDLE_PUBLISHERS``; else closed."""
        with self._plock:
            if len(self._idle) < IDLE_PUBLISHERS:
                self._idle.append(conn)
                return
        _quietly(conn.release)

    def _drop_idle(self) -> None:
        """After a failure every idle connection is suspect (RabbitMQ restarted, or stopped
        answering): dropped without a closing handshake, which a silent server would hang."""
        with self._plock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _quietly(conn.collect)

    def _publish_to(self, queue: str, message: Outgoing, delay: float | None = None) -> None:
        """Persistent, confirmed; a connection found dead (RabbitMQ restarted) is reopened once.
        ``delay`` (seconds, at least ``MIN_DELAY``) sends it through the delayed-delivery levels.
        The connection is taken and given back inline, not through ``_publishing``: this is every
        ``delay()``'s path, and whether it was a kept one is known from the take itself."""
        for attempt in (1, 2):
            conn: kombu.Connection | None = None
            stale = False  # a kept connection (which a restart may have killed: worth one retry)
            try:
                conn = self._take_idle()
                stale = conn is not None
                if conn is None:
                    conn = self._connection()
                self._send(conn, queue, message, delay)
            except BaseException as exc:
                if conn is not None:
                    # A server that stopped answering would never answer a polite close either.
                    _quietly(conn.collect if isinstance(exc, ConfirmTimeout) else conn.release)
                if not self._retry(exc, attempt, stale, queue):
                    raise
                continue
            self._give_back(conn)
            return

    def _retry(self, exc: BaseException, attempt: int, stale: bool, queue: str) -> bool:
        """After a failed publish: True to try once more, False to let ``exc`` through, or the
        one-line error it means."""
        if isinstance(exc, ConfirmTimeout):  # never sent again: RabbitMQ may have it already
            self._drop_idle()
            return False
        if isinstance(exc, amqp.exceptions.PreconditionFailed):
            raise ImproperlyConfigured(f"RabbitMQ refused the declaration of queue {queue!r}: {exc}") from None
        if isinstance(exc, amqp.exceptions.NotFound):
            # The delayed-delivery topology was deleted under us: declare it again, once.
            self._delay_ready.clear()
            if attempt == 2:
                raise BrokerUnavailable(f"RabbitMQ refused a delayed message: {exc}") from None
            return True
        if isinstance(exc, UNREACHABLE):
            self._drop_idle()
            if attempt == 2 or not stale:  # a fresh connection failed: RabbitMQ is down
                raise self._unavailable(exc) from None
            return True
        return False

    @contextmanager
    def _admin(self) -> Iterator[Any]:
        """A short-lived channel for operators' commands (depth, purge, dead letters)."""
        conn = self._connection(confirm=False)
        try:
            yield connected(conn, self.url).channel()
        finally:
            _quietly(conn.release)

    def ping(self) -> None:
        def run() -> None:
            with self._publishing() as conn:
                connected(conn, self.url)

        self._guard(run)

    def close(self) -> None:
        self.retire("")
        self._drop_idle()

    # -- declarations ---------------------------------------------------------------------------
    def entity(self, queue: str) -> kombu.Queue:
        """Celery's declaration of ``queue``: RabbitMQ refuses a second one that differs."""
        args: dict[str, Any] = {}
        if self.max_priority is not None:
            args["x-max-priority"] = int(self.max_priority)
        if self.queue_type and self.queue_type != "classic":
            args["x-queue-type"] = self.queue_type
        exchange = kombu.Exchange(queue, type="direct", durable=True)
        return kombu.Queue(queue, exchange, routing_key=queue, durable=True, queue_arguments=args or None)

    def declare(self, queues: Iterable[str]) -> None:
        def run() -> None:
            with self._publishing() as conn:
                for queue in queues:
                    self.entity(queue)(conn.default_channel).declare()

        self._guard(run)

    # -- publishing -----------------------------------------------------------------------------
    def batched(self) -> AbstractContextManager[None]:
        """See ``Gathering``: every message written, then every confirm awaited once."""
        return self._gathering.block(self.publish_many)

    def publish(self, queue: str, raw: bytes, priority: int | None = None) -> None:
        gathering = self._gathering.held()
        if gathering is not None:
            gathering.append((queue, raw, priority))
            return
        queue = amqp_delay.undelayed(queue)
        message = Outgoing(raw)
        if priority is not None:
            message.properties["priority"] = priority
        self._publish_to(queue, message, amqp_delay.due_in(message.headers, time.time()))

    def _send(self, conn: kombu.Connection, queue: str, message: Outgoing, delay: float | None = None) -> None:
        exchange, key = "", queue
        if delay is not None and delay >= amqp_delay.MIN_DELAY:
            self._delay_topology(conn, queue)
            exchange, key = amqp_delay.FIRST, amqp_delay.routing_key(delay, queue)
            # A per-message TTL would make it skip levels (RabbitMQ dead-letters it early); the
            # task's ``expires`` header still revokes it when it comes out.
            message.expiration = None
        # py-amqp directly (kombu's Producer cost about a quarter of a delay()'s CPU): the channel is in
        # confirm mode (``confirm_publish``), so this returns once RabbitMQ has the message.
        channel = conn.default_channel
        declared = ("tqctl.queue", queue)  # kombu forgets its declarations when it reconnects
        entities = cast("set[Any]", conn.declared_entities)
        if declared not in entities:
            self.entity(queue)(channel).declare()
            entities.add(declared)
        try:
            channel.basic_publish(
                to_message(message), exchange=exchange, routing_key=key, confirm_timeout=self.confirm_timeout
            )
        except TimeoutError:
            raise ConfirmTimeout(
                f"broker {mask_url(str(self.url))} took the message but sent no confirm within "
                f"{self.confirm_timeout:g}s (blocked publishers, a memory or disk alarm?): it may or may not be queued"
            ) from None

    def _delay_topology(self, conn: kombu.Connection, queue: str) -> None:
        """The levels (once per process) and ``queue``'s binding, before its first delayed message."""
        if queue in self._delay_ready:
            return
        self.entity(queue)(conn.default_channel).declare()
        if not self._delay_ready:
            amqp_delay.declare_topology(conn.connection, self.delayed_queue_type)
        amqp_delay.bind(conn.connection, [queue])
        self._delay_ready.add(queue)

    def publish_many(self, items: Sequence[tuple[str, bytes, int | None]]) -> None:
        """Every message written on a channel in confirm mode, then every confirm awaited (RabbitMQ
        acks many at once): one wait for the batch instead of one per message. A failure before
        anything was confirmed (a connection RabbitMQ dropped) is retried once on a fresh one;
        after that it is ``BrokerUnavailable``, and the messages already confirmed stay sent."""
        if not items:
            return
        batch = []
        now = time.time()
        for name, raw, priority in items:
            queue = amqp_delay.undelayed(name)
            message = Outgoing(raw)
            if priority is not None:
                message.properties["priority"] = priority
            delay = amqp_delay.due_in(message.headers, now)
            if delay is not None and delay >= amqp_delay.MIN_DELAY:
                self._publish_to(queue, message, delay)  # through the delay levels, one by one
            else:
                batch.append((queue, message))
        if not batch:
            return
        for attempt in (1, 2):
            # A kept connection a restart may have killed is worth one retry; a new one failing
            # means RabbitMQ is down: an outage fails within one connect timeout, not two.
            confirmed, kept = [0], [False]
            try:
                with self._publishing(kept) as conn:
                    self._send_batch(conn, batch, confirmed)
                return
            except amqp.exceptions.PreconditionFailed as exc:
                raise ImproperlyConfigured(f"RabbitMQ refused a queue declaration: {exc}") from None
            except UNREACHABLE as exc:
                self._drop_idle()
                if attempt == 2 or confirmed[0] or not kept[0]:
                    raise self._unavailable(exc) from None

    def _send_batch(self, conn: kombu.Connection, batch: list[tuple[str, Outgoing]], confirmed: list[int]) -> None:
        for queue in dict.fromkeys(q for q, _ in batch):
            self.entity(queue)(conn.default_channel).declare()
        channel = conn.connection.channel()
        upto, single, refused = [0], set(), []

        def on_ack(tag: int, multiple: bool) -> None:
            if multiple:
                upto[0] = max(upto[0], tag)
            else:
                single.add(tag)
            confirmed[0] = upto[0] + sum(1 for t in single if t > upto[0])

        channel.events["basic_ack"].add(on_ack)
        channel.events["basic_nack"].add(lambda tag, multiple: refused.append(tag))
        try:
            channel.confirm_select()
            for queue, m in batch:
                channel._basic_publish(to_message(m), exchange="", routing_key=queue)
            while confirmed[0] < len(batch) and not refused:
                channel.wait([amqp.spec.Basic.Ack, amqp.spec.Basic.Nack], timeout=self.confirm_timeout)
        finally:
            _quietly(channel.close)
        if refused:
            raise BrokerUnavailable(f"RabbitMQ refused {len(refused)} of {len(batch)} message(s) (basic.nack)")

    def hand_back(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Early-acked messages that did not finish: RabbitMQ has forgotten them, publish again."""
        for queue_key, raw in items:
            self.publish(queue_key, raw)

    # -- consuming ------------------------------------------------------------------------------
    def fetch(
        self, owner: str, queues: Sequence[str], limit: int, timeout: float, acks: Sequence[str] = ()
    ) -> list[Delivery]:
        """Up to ``limit`` deliveries pushed by RabbitMQ, waiting up to ``timeout`` for the first.

        The prefetch window (``basic_qos``) follows the largest ``limit`` asked for, which is the
        worker's prefetch (concurrency × multiplier), plus one per held ETA message. The wait is
        cut into short slices so acks and claims from other threads get the channel in between.
        """
        self.ack(owner, acks)
        deadline = _now() + max(timeout, 0.0)
        while True:
            with self._turns:  # let a waiting ack or claim have the channel between two slices
                self._turns.wait_for(lambda: self._waiting == 0, SLICE)
            with self._lock:
                self._ensure_consuming(queues, limit)
                if not self._ready:
                    self._drain(min(SLICE, max(deadline - _now(), 0.0)))
                # What RabbitMQ already pushed comes along in this fetch, not one per fetch.
                while self._ready and len(self._ready) < limit and self._conn is not None:
                    if not amqp_read.pending(self._conn.connection):
                        break
                    self._drain(GATHER)
                if self._ready or _now() >= deadline:
                    return [self._ready.popleft() for _ in range(min(limit, len(self._ready)))]

    def _ensure_consuming(self, queues: Sequence[str], limit: int) -> None:
        try:
            if self._conn is None:
                self._conn = connected(self._connection(confirm=False), self.url)
                amqp_read.buffer_reads(self._conn.connection)
                self._window = 0
            self._base = max(self._base, limit, 1)
            wanted = self._base + len(self._deferred)
            channel = self._conn.default_channel
            if wanted != self._window:
                channel.basic_qos(0, wanted, False)
                self._window = wanted
            if tuple(queues) != self._consuming:
                if self._consumer is not None:
                    self._cancel(channel)
                for name in queues:
                    self.entity(name)(channel).declare()
                # py-amqp's own consumer: kombu's wraps each delivery in a Message object first.
                # Which queue a delivery came from (its routing key may differ: a custom exchange).
                self._queue_of = {
                    channel.basic_consume(name, consumer_tag="", callback=self._on_message, no_ack=False): name
                    for name in queues
                }
                self._consumer = list(self._queue_of)
                self._consuming = tuple(queues)
                self._bind_delayed(queues)  # after: deliveries may arrive during its round trips
        except amqp.exceptions.PreconditionFailed as exc:
            self._lost()
            raise ImproperlyConfigured(f"RabbitMQ refused a queue declaration: {exc}") from None
        except UNREACHABLE as exc:
            self._lost()
            raise self._unavailable(exc) from None

    def _bind_delayed(self, queues: Sequence[str]) -> None:
        """Delayed tasks for these queues come out of ``celery_delayed_delivery`` (a client binds
        its queue before its first delayed task too: this one is for queues deleted since)."""
        assert self._conn is not None
        try:
            amqp_delay.declare_topology(self._conn.connection, self.delayed_queue_type)
            amqp_delay.bind(self._conn.connection, list(queues))
        except amqp.exceptions.ChannelError as exc:  # consuming goes on; the client binds as well
            log.warning("could not bind %s to the delayed-delivery exchange: %s", ", ".join(queues), exc)

    def _drain(self, timeout: float) -> None:
        assert self._conn is not None
        if (exc := drain_events(self._conn, timeout)) is not None:
            # A closed channel too: RabbitMQ's consumer_timeout, or an ack it did not know. Its
            # unacked messages are redelivered; we start over on a new connection.
            self._lost()
            raise self._unavailable(exc) from None

    def _cancel(self, channel: Any) -> None:
        for tag in self._consumer or ():
            channel.basic_cancel(tag)
        self._consumer = None

    def _stop_consuming(self) -> None:
        """Cancel our consumers on a live channel (quietly: it may be going away)."""
        if self._consumer is not None and self._conn is not None:
            channel = self._conn.default_channel
            _quietly(lambda: self._cancel(channel))
        self._consumer, self._consuming = None, ()

    def _on_message(self, message: Any) -> None:
        """A py-amqp delivery: its properties hold the content type, encoding and headers."""
        info, props = message.delivery_info, message.properties
        number = info["delivery_tag"]
        tag = f"{self._gen}.{number}"
        try:
            raw = envelope(
                message.body,
                props.get("content_type"),
                props.get("content_encoding"),
                props.get("application_headers"),
                props,
                info.get("exchange") or "",
                info.get("routing_key") or "",
                bool(info.get("redelivered")),
                tag,
            )
        except Exception as exc:  # the worker dead-letters what it cannot decode, with this reason
            raw = f"unreadable AMQP message: {exc!r}".encode()
        queue = (
            self._queue_of.get(info.get("consumer_tag") or "")
            or info.get("routing_key")
            or (self._consuming[0] if self._consuming else "celery")
        )
        delivery = Delivery(tag, queue, raw)
        self._held[tag] = (number, delivery)
        self._ready.append(delivery)

    def _lost(self) -> None:
        """The channel is gone and with it every unacked delivery: RabbitMQ redelivers them."""
        conn, self._conn = self._conn, None
        self._consumer, self._consuming = None, ()
        self._gen += 1
        self._ready.clear()
        self._held.clear()
        self._deferred.clear()
        self._window = 0
        if conn is not None:
            _quietly(conn.release)

    @contextmanager
    def _channel(self) -> Iterator[None]:
        """The consumer's channel for an ack or a claim from another thread. The consumer's wait
        takes the lock straight back after each slice (a lock is not fair), which left an early-ack
        task waiting up to the whole wait (0.1-0.2 s) to start; counted here, it waits one slice."""
        with self._turns:
            self._waiting += 1
        try:
            self._lock.acquire()
        finally:
            with self._turns:
                self._waiting -= 1
                self._turns.notify_all()
        try:
            yield
        finally:
            self._lock.release()

    def _settle(self, tags: Sequence[str], how: Callable[[Any, int], None]) -> int:
        """Apply ``how(channel, delivery_tag)`` to each tag still held on the live channel."""
        done = 0
        with self._channel():
            if self._conn is None:
                return 0
            try:
                channel = self._conn.default_channel
                for tag in tags:
                    held = self._held.pop(tag, None)
                    if held is not None:
                        how(channel, held[0])
                        done += 1
            except (*UNREACHABLE, amqp.exceptions.ChannelError) as exc:
                self._lost()
                raise self._unavailable(exc) from None
        return done

    def ack(self, owner: str, tags: Sequence[str]) -> None:
        """One ``basic.ack`` with ``multiple`` for the run of tags below every delivery still
        held (a held one, an ETA message or one not yet run, is never covered), single acks for
        the rest."""
        if not tags:
            return
        with self._channel():  # not behind the consumer's wait (see ``_channel``)
            if self._conn is None:
                return
            numbers = sorted(held[0] for tag in tags if (held := self._held.pop(tag, None)) is not None)
            if not numbers:
                return
            low = min((number for number, _ in self._held.values()), default=None)
            covered = [n for n in numbers if low is None or n < low]
            try:
                channel = self._conn.default_channel
                if covered:
                    channel.basic_ack(covered[-1], multiple=len(covered) > 1)
                for number in numbers[len(covered) :]:
                    channel.basic_ack(number)
            except (*UNREACHABLE, amqp.exceptions.ChannelError) as exc:
                self._lost()
                raise self._unavailable(exc) from None

    def requeue(self, owner: str, tags: Sequence[str]) -> int:
        """Back to the queue by RabbitMQ itself (``redelivered`` set on the next delivery)."""
        return self._settle(tags, lambda ch, n: ch.basic_reject(n, requeue=True)) if tags else 0

    def requeue_all(self, owner: str) -> int:
        """Everything we hold back to its queue, consuming stopped first so none comes straight back."""
        with self._lock:
            self._stop_consuming()
            self._ready.clear()
            self._deferred.clear()
            return self.requeue(owner, list(self._held))

    def claim(self, owner: str, tag: str, take: bool, acks: Sequence[str] = (), fresh: float | None = None) -> bool:
        """Still ours if it was delivered on the channel we still have (a lost channel's messages
        were redelivered by RabbitMQ). ``take`` (early ack) acks it before the task runs. The
        channel is the lease here, so ``fresh`` (a heartbeat's age) does not apply."""
        self.ack(owner, acks)
        with self._channel():
            if tag not in self._held:
                return False
            if take:
                return self._settle([tag], lambda ch, n: ch.basic_ack(n)) == 1
            return True

    def forsake(self, tags: Sequence[str]) -> None:
        with self._lock:
            self._forsaken.extend(tags)

    def reconcile(self, owner: str) -> int:
        """Requeue what this process fetched but gave up on. (No lost fetch replies to find: a
        delivery RabbitMQ pushed and we never saw is redelivered when the channel closes.)"""
        with self._lock:
            tags, self._forsaken = self._forsaken, []
        return self.requeue(owner, tags) if tags else 0

    # -- ETA ------------------------------------------------------------------------------------
    def defer(self, owner: str, tag: str, eta: float) -> None:
        """Send a task due later than ``HOLD`` back to RabbitMQ's delay levels (confirmed, then
        acked: a crash in between costs a duplicate, never the task); hold a sooner one (or one
        that could not be re-routed) unacked until ``eta``, the window one larger on the next fetch."""
        with self._lock:
            held = self._held.get(tag)
        if held is None:
            return
        delay = eta - time.time()
        if delay > HOLD:
            try:
                self._publish_to(held[1].queue_key, Outgoing(held[1].raw), delay)
            except (BrokerUnavailable, ImproperlyConfigured) as exc:
                log.warning("holding a task due in %.0fs in memory: could not re-route it (%s)", delay, exc)
            else:
                self.ack(owner, [tag])
                return
        with self._lock:
            if tag in self._held:
                self._deferred.push(eta, held[1])

    def promote_due(self, now: float, limit: int = 500) -> tuple[int, float | None]:
        """Due ETA messages go back to the front of what the next fetch returns."""
        with self._lock:
            due = self._deferred.pop_due(now, limit, lambda delivery: delivery.tag in self._held)
            self._ready.extendleft(due)  # as appendleft one by one did
            return len(due), self._deferred.next_due()

    def delayed_count(self) -> int:
        return len(self._deferred)

    def held_etas(self) -> list[tuple[float, Delivery]]:
        """The tasks due within ``HOLD`` that this worker holds unacked (later ones wait in RabbitMQ)."""
        with self._lock:
            return self._deferred.listing(lambda delivery: delivery.tag in self._held)

    # -- liveness (RabbitMQ's job on AMQP) ---------------------------------------------------------
    def heartbeat(self, owner: str, now: float, slack: float = 2.0, timeout: float | None = None) -> bool:
        """False once after the consumer's channel was lost: the worker then checks each late-ack
        job with ``claim`` before starting it (RabbitMQ has redelivered those messages)."""
        gen, last = self._gen, self._beat_gen
        self._beat_gen = gen
        return last is None or last == gen

    def reap(self, now: float, timeout: float, slack: float = 2.0) -> int:
        """Nothing to reap: RabbitMQ redelivers a dead consumer's messages when its channel closes."""
        return 0

    def retire(self, owner: str) -> None:
        """Close the consumer's connection; RabbitMQ requeues whatever is still unacked."""
        with self._lock:
            self._stop_consuming()
            self._lost()

    def inflight_count(self, owner: str) -> int:
        return len(self._held)

    # -- dead letters -----------------------------------------------------------------------------
    def dead_letter(self, owner: str | None, tag: str | None, letter: DeadLetter) -> None:
        """Store the letter (confirmed) before acking the message: a crash between costs a duplicate."""
        headers = {"tqctl_letter": letter.id, **{f"tqctl_{k}": getattr(letter, k) for k in LETTER_FIELDS}}
        message = Outgoing(letter.raw)
        message.headers = {**message.headers, **headers}
        message.expiration = None
        self._publish_to(DEAD, message)
        if tag:
            self.ack(owner or "", [tag])

    def _browse(self, visit: Callable[[Any, Any], bool]) -> None:
        """Read ``tqctl.dead`` from the head; ``visit(channel, message)`` True stops. What is not
        acked goes back, in order, when the channel closes."""

        def run() -> None:
            with self._admin() as channel:
                self.entity(DEAD)(channel).declare()
                while (message := channel.basic_get(DEAD, no_ack=False)) is not None:
                    if visit(channel, message):
                        return

        self._guard(run)

    def _letter(self, message: Any) -> DeadLetter:
        h = message.headers or {}
        info = message.delivery_info
        raw = envelope(
            message.body,
            message.content_type,
            message.content_encoding,
            {k: v for k, v in h.items() if not str(k).startswith("tqctl_")},
            message.properties,
            "",
            str(h.get("tqctl_queue") or info.get("routing_key") or ""),
            False,
            str(h.get("tqctl_letter")),
        )
        return DeadLetter(
            id=str(h.get("tqctl_letter")),
            queue=h.get("tqctl_queue"),
            reason=str(h.get("tqctl_reason") or ""),
            detail=str(h.get("tqctl_detail") or ""),
            time=float(h.get("tqctl_time") or 0.0),
            task_id=h.get("tqctl_task_id"),
            task_name=h.get("tqctl_task_name"),
            worker=h.get("tqctl_worker"),
            raw=raw,
        )

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        found: list[DeadLetter] = []

        def visit(channel: Any, message: Any) -> bool:
            found.append(self._letter(message))
            return False

        self._browse(visit)
        return list(reversed(found))[: max(limit, 1)]

    def dead_letter_count(self) -> int:
        return self.queue_depth(DEAD)

    def dead_letter_get(self, letter_id: str) -> DeadLetter | None:
        found: list[DeadLetter] = []

        def visit(channel: Any, message: Any) -> bool:
            if (message.headers or {}).get("tqctl_letter") == letter_id:
                found.append(self._letter(message))
                return True
            return False

        self._browse(visit)
        return found[0] if found else None

    def dead_letter_requeue(self, letter_id: str) -> bool:
        done: list[bool] = []

        def visit(channel: Any, message: Any) -> bool:
            if (message.headers or {}).get("tqctl_letter") != letter_id:
                return False
            letter = self._letter(message)
            self.publish(letter.queue or "celery", letter.raw)
            channel.basic_ack(message.delivery_tag)
            done.append(True)
            return True

        self._browse(visit)
        return bool(done)

    def dead_letter_delete(self, letter_id: str) -> bool:
        done: list[bool] = []

        def visit(channel: Any, message: Any) -> bool:
            if (message.headers or {}).get("tqctl_letter") != letter_id:
                return False
            channel.basic_ack(message.delivery_tag)
            done.append(True)
            return True

        self._browse(visit)
        return bool(done)

    # -- queues -----------------------------------------------------------------------------------
    def queue_depth(self, queue: str) -> int:
        """Messages ready in ``queue`` (a passive declare; unacked ones are not counted, as in
        RabbitMQ's own ``messages_ready``); 0 for a queue that does not exist."""

        def run() -> int:
            with self._admin() as channel:
                try:
                    _, count, _ = channel.queue_declare(queue, passive=True)
                except amqp.exceptions.NotFound:
                    return 0
                return int(count)

        return self._guard(run)

    def queue_consumers(self, queue: str) -> int | None:
        """Consumers RabbitMQ counts on ``queue`` (the passive declare's ``consumer_count``: each
        worker connection consuming it, Celery's too); 0 for a queue that does not exist."""

        def run() -> int:
            with self._admin() as channel:
                try:
                    _, _, consumers = channel.queue_declare(queue, passive=True)
                except amqp.exceptions.NotFound:
                    return 0
                return int(consumers)

        return self._guard(run)

    def purge(self, queue: str) -> int:
        def run() -> int:
            with self._admin() as channel:
                try:
                    return int(channel.queue_purge(queue) or 0)
                except amqp.exceptions.NotFound:
                    return 0

        return self._guard(run)


def open_connection(url: str, **transport_options: Any) -> kombu.Connection:
    """A kombu connection (not yet connected) with Celery's ``broker_use_ssl`` applied: the
    URL carries it (``engine.redisconn.with_options``) in redis-py's key names."""
    within = _connect_within(url)
    return kombu.Connection(
        str(url).replace("pyamqp://", "amqp://", 1),
        connect_timeout=min(CONNECT_TIMEOUT, within) if within else CONNECT_TIMEOUT,
        ssl=tls_options(url),
        transport_options={"max_retries": 0, **transport_options},  # callers retry once, themselves
    )


def connected(conn: kombu.Connection, url: str) -> kombu.Connection:
    """``conn`` connected, with one retry (a restart's first refusal), all of it within the URL's
    bound when it has one (``bounded``): a broker that never answers costs ``--timeout``, not two
    connect timeouts and the pause between them."""
    conn.ensure_connection(max_retries=1, timeout=_connect_within(url))
    return conn


def bounded(url: str, seconds: float) -> str:
    """``url`` whose connecting gives up after about ``seconds`` (tqctl's ``--timeout``)."""
    from engine.redisconn import ConnectionURL

    return ConnectionURL(str(url), {**getattr(url, "options", {}), "connect_within": float(seconds)})


def _connect_within(url: str) -> float | None:
    value = getattr(url, "options", {}).get("connect_within")
    return float(value) if value else None


def tls_options(url: str) -> dict[str, Any] | bool | None:
    """py-amqp's TLS options from the URL's ``broker_use_ssl``; None leaves it to the scheme
    (``amqps://`` is TLS with the system's CAs, ``amqp://`` is plain)."""
    given: dict[str, Any] | None = getattr(url, "options", {}).get("ssl")
    if given is None:
        return None
    out: dict[str, Any] = {}
    reqs = given.get("ssl_cert_reqs")
    if reqs:
        out["cert_reqs"] = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL}.get(reqs, ssl.CERT_REQUIRED)
    for ours, theirs in (("ssl_ca_certs", "ca_certs"), ("ssl_certfile", "certfile"), ("ssl_keyfile", "keyfile")):
        if given.get(ours):
            out[theirs] = given[ours]
    return out or True  # ``broker_use_ssl = True``: TLS with the system's CAs


def _quietly(call: Callable[[], object]) -> None:
    try:
        call()
    except Exception:  # closing what may already be gone
        log.debug("ignored while closing an AMQP connection", exc_info=True)


def _now() -> float:
    return time.monotonic()
