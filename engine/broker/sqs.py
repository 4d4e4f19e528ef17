"""The SQS broker (Amazon SQS, or anything that speaks its API) through kombu's SQS transport.

kombu's ``sqs://`` channel does what Celery's does with the same ``broker_transport_options``
(``region``, ``visibility_timeout``, ``queue_name_prefix``, ``predefined_queues``,
``client-config``, STS roles): it names and creates queues, makes the boto3
client and writes messages (kombu's JSON envelope, base64-encoded, as a Celery client writes
them). We call that channel's SQS client ourselves to receive, delete and change visibility,
because the worker settles messages by its own tags rather than through kombu's consumer loop.

Reliability is SQS's visibility timeout: a received message is hidden from other consumers for
``visibility_timeout`` seconds and comes back unless it is deleted (acked) first. A worker that
dies has its unacked messages received again once that time has passed (``redelivered`` is set
from SQS's ``ApproximateReceiveCount``). Handing a message back makes it visible at once.

What SQS has no place for, as in Celery: priorities (ignored) and broadcasts (no events, no
remote control: ``engine.broker.sqs_fanout``). Countdown/ETA messages are held unacked in the
worker until due, as Celery holds them; unlike Celery we stretch such a message's visibility to
cover its ETA (SQS allows 12 hours), so a countdown longer than ``visibility_timeout`` does not
make it come back and run twice. SQS's own ``DelaySeconds`` (900 s at most) is not used.

Dead letters go to a queue ``tqctl.dead`` (``engine.broker.sqs_letters``).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import kombu
import kombu.exceptions
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError, PartialCredentialsError

from engine.broker.base import DeadLetter, Delivery
from engine.broker.eta_hold import EtaHold
from engine.broker.sqs_letters import DEAD, DeadLetterQueue
from engine.config import mask_url
from engine.exceptions import BrokerUnavailable, ImproperlyConfigured, one_line
from engine.redisconn import ConnectionURL
from engine.serialization import json_dumps

log = logging.getLogger("engine.broker")
BATCH = 10  # SQS's most per ReceiveMessage and per DeleteMessageBatch
MAX_WAIT = 20  # SQS's longest long poll
MAX_VISIBILITY = 43200  # SQS's longest visibility timeout: 12 hours
# Short timeouts and one retry, so a wrong endpoint fails in seconds; reads outlast a long poll.
CLIENT_CONFIG = {"connect_timeout": 5, "read_timeout": MAX_WAIT + 10, "retries": {"max_attempts": 2}}
B64 = re.compile(rb"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")
MISCONFIGURED = (NoCredentialsError, PartialCredentialsError, NoRegionError)
T = TypeVar("T")


class SqsBroker:
    def __init__(self, url: str) -> None:
        _check_url(str(url))
        self.url = url
        given: dict[str, Any] = dict(getattr(url, "options", {}).get("sqs_options") or {})
        self.polling_interval = float(given.get("polling_interval", 1.0))
        self.options = {
            "max_retries": 0,  # kombu's own retries when connecting: our callers retry, themselves
            **given,
            "client-config": {**CLIENT_CONFIG, **(given.get("client-config") or {})},
        }
        self._lock = threading.Lock()
        self._conn: kombu.Connection | None = None
        self._chan: Any = None
        self._tags = itertools.count(1)
        # Every received message not yet settled: our tag -> (queue URL, receipt handle, delivery).
        self._held: dict[str, tuple[str, str, Delivery]] = {}
        self._deferred: EtaHold[Delivery] = EtaHold()
        self._ready: list[Delivery] = []  # due ETA messages, handed out by the next fetch
        self._forsaken: list[str] = []
        self._turn = 0  # which queue a multi-queue fetch reads first

    # -- the kombu channel ------------------------------------------------------------------------
    def _channel(self) -> Any:
        """kombu's SQS channel (made once: making it lists the queues, to learn their URLs)."""
        with self._lock:
            if self._chan is None:
                conn = kombu.Connection(str(self.url), transport_options=self.options)
                try:
                    self._chan = conn.default_channel
                except BaseException:
                    _quietly(conn.release)
                    raise
                self._conn = conn
            return self._chan

    def _guard(self, call: Callable[[], T]) -> T:
        """SQS's and boto's errors as ours, in one line, credentials never in it: a missing
        credential or a predefined_queues mistake is ImproperlyConfigured; the rest (the endpoint
        away, SQS refusing or throttling) BrokerUnavailable, which a worker retries."""
        where = mask_url(str(self.url))
        try:
            return call()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if "NonExistentQueue" in code or code == "QueueDoesNotExist":
                self._forget_queue_urls()  # deleted behind our back: the next call makes it again
            raise BrokerUnavailable(f"broker {where} refused the call: {one_line(exc)}") from None
        except (BotoCoreError, OSError, kombu.exceptions.OperationalError) as exc:
            cause = exc.__cause__ or exc.__context__  # kombu wraps what failed when connecting
            if isinstance(exc, MISCONFIGURED) or isinstance(cause, MISCONFIGURED):
                raise ImproperlyConfigured(f"broker {where}: {one_line(exc)}") from None
            raise BrokerUnavailable(f"broker {where} unreachable: {one_line(exc)}") from None
        except Exception as exc:
            if type(exc).__module__.startswith("kombu.transport.SQS"):  # a predefined_queues mistake
                raise ImproperlyConfigured(f"SQS: {one_line(exc)}") from None
            raise

    def _forget_queue_urls(self) -> None:
        if self._chan is not None:
            self._chan._queue_cache.clear()

    def _queue_url(self, queue: str) -> str:
        """The queue's URL, the queue made first when it does not exist (as kombu does)."""
        return str(self._channel()._new_queue(queue))

    def _existing_url(self, queue: str) -> str | None:
        chan = self._channel()
        try:
            return str(chan._resolve_queue_url(queue))
        except Exception as exc:
            if type(exc).__name__ in ("DoesNotExistQueueException", "UndefinedQueueException"):
                return None
            raise

    def _client(self, queue: str | None = None) -> Any:
        chan = self._channel()
        return chan.sqs(queue=chan.canonical_queue_name(queue) if queue else None)

    def ping(self) -> None:
        """A call SQS must answer: with ``predefined_queues`` (credentials may be per queue, and
        allow no listing) the first queue's attributes, else a listing."""

        def run() -> None:
            chan = self._channel()
            for name, queue in chan.predefined_queues.items():
                chan.sqs(queue=name).get_queue_attributes(QueueUrl=queue["url"], AttributeNames=["QueueArn"])
                return
            chan.sqs().list_queues(MaxResults=1)

        self._guard(run)

    def declare(self, queues: Iterable[str]) -> None:
        def run() -> None:
            for queue in queues:
                self._queue_url(queue)

        self._guard(run)

    def close(self) -> None:
        self.retire("")
        with self._lock:
            conn, self._conn, self._chan = self._conn, None, None
        if conn is not None:
            _quietly(conn.release)

    # -- publishing -------------------------------------------------------------------------------
    def publish(self, queue: str, raw: bytes, priority: int | None = None) -> None:
        """kombu writes it as a Celery client would (SQS has no priorities: ``priority`` is dropped)."""
        try:
            message = json.loads(raw)
        except ValueError:
            message = None
        if isinstance(message, dict):
            self._guard(lambda: self._channel()._put(queue, message))
        else:  # not an envelope (a dead letter sent back as it came): the body as it was
            body = raw.decode("utf-8", "replace")
            self._guard(lambda: self._client(queue).send_message(QueueUrl=self._queue_url(queue), MessageBody=body))

    def publish_many(self, items: Sequence[tuple[str, bytes, int | None]]) -> None:
        for queue, raw, priority in items:
            self.publish(queue, raw, priority)

    def hand_back(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Early-acked messages that did not finish: SQS has deleted them, send them again."""
        for queue, raw in items:
            self.publish(queue, raw)

    # -- consuming --------------------------------------------------------------------------------
    def fetch(
        self, owner: str, queues: Sequence[str], limit: int, timeout: float, acks: Sequence[str] = ()
    ) -> list[Delivery]:
        """Up to ``limit`` messages, waiting up to ``timeout`` for the first. One queue is long
        polled; several are each asked without waiting, ``polling_interval`` apart when all
        are empty (a long poll on one would keep the others waiting), as kombu does."""
        self.ack(owner, acks)
        with self._lock:
            got, self._ready = self._ready[:limit], self._ready[limit:]
        deadline = time.monotonic() + max(timeout, 0.0)
        while not got and queues:
            self._turn += 1
            names = list(queues[self._turn % len(queues) :]) + list(queues[: self._turn % len(queues)])
            for queue in names:
                if len(got) >= limit:
                    break
                left = deadline - time.monotonic()
                wait = max(0, min(MAX_WAIT, round(left))) if len(names) == 1 else 0  # SQS takes whole seconds
                got += self._guard(partial(self._receive, queue, min(limit - len(got), BATCH), wait))
            left = deadline - time.monotonic()
            if got or left <= 0:
                break
            time.sleep(min(left, self.polling_interval if len(names) > 1 else 0.1))
        return got

    def _receive(self, queue: str, count: int, wait: int) -> list[Delivery]:
        url = self._queue_url(queue)
        reply = self._client(queue).receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=max(1, min(count, BATCH)),
            WaitTimeSeconds=wait,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        found = []
        for message in reply.get("Messages") or []:
            tag = f"sqs.{next(self._tags)}"
            again = int((message.get("Attributes") or {}).get("ApproximateReceiveCount") or 1) > 1
            delivery = Delivery(tag, queue, _envelope(message.get("Body") or "", tag, queue, again))
            with self._lock:
                self._held[tag] = (str(url), message["ReceiptHandle"], delivery)
            found.append(delivery)
        return found

    def _take(self, tags: Sequence[str]) -> dict[tuple[str, str], list[tuple[str, str]]]:
        """The held tags among ``tags``, by (queue URL, queue): (tag, receipt handle). The queue
        picks the client: a predefined queue may have credentials of its own."""
        by_queue: dict[tuple[str, str], list[tuple[str, str]]] = {}
        with self._lock:
            for tag in tags:
                held = self._held.get(tag)
                if held is not None:
                    by_queue.setdefault((held[0], held[2].queue), []).append((tag, held[1]))
        return by_queue

    def _forget(self, tags: Iterable[str]) -> None:
        with self._lock:
            for tag in tags:
                self._held.pop(tag, None)

    def ack(self, owner: str, tags: Sequence[str]) -> None:
        """Delete them, ten to a call. A receipt SQS no longer knows (the visibility timeout ran
        out and another consumer has the message) is not an error: that consumer settles it."""
        for (url, queue), batch in self._take(tags).items():
            for start in range(0, len(batch), BATCH):
                part = batch[start : start + BATCH]
                entries = [{"Id": str(i), "ReceiptHandle": handle} for i, (_, handle) in enumerate(part)]
                self._guard(partial(self._delete, url, queue, entries))
                self._forget(tag for tag, _ in part)

    def _delete(self, url: str, queue: str, entries: list[dict[str, str]]) -> None:
        self._client(queue).delete_message_batch(QueueUrl=url, Entries=entries)

    def requeue(self, owner: str, tags: Sequence[str]) -> int:
        """Visible again at once (SQS counts the next receive: ``redelivered`` is set)."""
        done = 0
        for (url, queue), batch in self._take(tags).items():
            for tag, handle in batch:
                self._guard(partial(self._visible_in, url, queue, handle, 0))
                self._forget([tag])
                done += 1
        return done

    def _visible_in(self, url: str, queue: str, handle: str, seconds: int) -> None:
        try:
            self._client(queue).change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=seconds)
        except ClientError as exc:  # the receipt ran out: SQS shows the message again by itself
            log.debug("SQS visibility change refused: %s", one_line(exc))

    def requeue_all(self, owner: str) -> int:
        with self._lock:
            tags = list(self._held)
            self._deferred.clear()
            self._ready.clear()
        return self.requeue(owner, tags)

    def claim(self, owner: str, tag: str, take: bool, acks: Sequence[str] = (), fresh: float | None = None) -> bool:
        """Ours while we hold its receipt; ``take`` (early ack) deletes it before the task runs.
        The visibility timeout is the lease here, so ``fresh`` (a heartbeat's age) does not apply."""
        self.ack(owner, acks)
        with self._lock:
            if tag not in self._held:
                return False
        if take:
            self.ack(owner, [tag])
        return True

    def forsake(self, tags: Sequence[str]) -> None:
        with self._lock:
            self._forsaken.extend(tags)

    def reconcile(self, owner: str) -> int:
        with self._lock:
            tags, self._forsaken = self._forsaken, []
        return self.requeue(owner, tags) if tags else 0

    # -- ETA ----------------------------------------------------------------------------------------
    def defer(self, owner: str, tag: str, eta: float) -> None:
        """Held here until due, as Celery holds it; hidden on SQS until then too (up to 12 hours),
        so it is not received again meanwhile. A worker that dies lets it come back near its ETA."""
        with self._lock:
            held = self._held.get(tag)
        if held is None:
            return
        hide = min(MAX_VISIBILITY, math.ceil(eta - time.time()) + self._visibility())
        self._guard(lambda: self._visible_in(held[0], held[2].queue, held[1], max(hide, 0)))
        with self._lock:
            self._deferred.push(eta, held[2])

    def _visibility(self) -> int:
        return int(self._channel().visibility_timeout)

    def promote_due(self, now: float, limit: int = 500) -> tuple[int, float | None]:
        """Due ETA messages are handed out again by the next fetch (their receipts are still ours)."""
        with self._lock:
            due = self._deferred.pop_due(now, limit, lambda delivery: delivery.tag in self._held)
            self._ready.extend(due)
            return len(due), self._deferred.next_due()

    def delayed_count(self) -> int:
        return len(self._deferred)

    def held_etas(self) -> list[tuple[float, Delivery]]:
        """Every ETA task this worker received early holds until due, as Celery's does (SQS has no
        remote control, so no ``inspect scheduled`` reaches it; the answer is still the true one)."""
        with self._lock:
            return self._deferred.listing(lambda delivery: delivery.tag in self._held)

    # -- liveness: SQS's visibility timeout does it -------------------------------------------------
    def heartbeat(self, owner: str, now: float, slack: float = 2.0, timeout: float | None = None) -> bool:
        return True

    def reap(self, now: float, timeout: float, slack: float = 2.0) -> int:
        """Nothing to reap: a dead worker's messages come back when their visibility runs out."""
        return 0

    def retire(self, owner: str) -> None:
        """What we still hold is shown again now rather than when its visibility runs out."""
        if self._chan is not None and self._held:
            try:
                self.requeue_all(owner)
            except (BrokerUnavailable, ImproperlyConfigured) as exc:
                log.warning("could not hand back SQS messages (they come back by themselves): %s", exc)

    def inflight_count(self, owner: str) -> int:
        return len(self._held)

    # -- queues ---------------------------------------------------------------------------------------
    def queue_depth(self, queue: str) -> int:
        """SQS's ``ApproximateNumberOfMessages`` (visible ones); 0 for a queue that does not exist."""

        def run() -> int:
            url = self._existing_url(queue)
            if url is None:
                return 0
            reply = self._client(queue).get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            )
            return int(reply["Attributes"]["ApproximateNumberOfMessages"])

        return self._guard(run)

    def queue_consumers(self, queue: str) -> int | None:
        """SQS does not know its consumers."""
        return None

    def purge(self, queue: str) -> int:
        def run() -> int:
            url = self._existing_url(queue)
            if url is None:
                return 0
            count = self.queue_depth(queue)
            self._client(queue).purge_queue(QueueUrl=url)
            return count

        return self._guard(run)

    # -- dead letters (engine.broker.sqs_letters) ---------------------------------------------------
    def _dead(self) -> DeadLetterQueue:
        return DeadLetterQueue(self._client(DEAD), self._queue_url(DEAD))

    def dead_letter(self, owner: str | None, tag: str | None, letter: DeadLetter) -> None:
        """Stored before the message is deleted: a crash between costs a duplicate, not a loss."""
        self._guard(lambda: self._dead().store(letter))
        if tag:
            self.ack(owner or "", [tag])

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self._guard(lambda: self._dead().all(limit))

    def dead_letter_count(self) -> int:
        return self.queue_depth(DEAD)

    def dead_letter_get(self, letter_id: str) -> DeadLetter | None:
        return self._guard(lambda: self._dead().find(letter_id, lambda letter, delete: None))

    def dead_letter_requeue(self, letter_id: str) -> bool:
        def act(letter: DeadLetter, delete: Callable[[], None]) -> None:
            self.publish(letter.queue or "celery", letter.raw)
            delete()

        return self._guard(lambda: self._dead().find(letter_id, act)) is not None

    def dead_letter_delete(self, letter_id: str) -> bool:
        return self._guard(lambda: self._dead().find(letter_id, lambda letter, delete: delete())) is not None


def _envelope(body: str, tag: str, queue: str, redelivered: bool) -> bytes:
    """The kombu envelope a Redis consumer would have read, with this delivery's tag and info.
    A body that is not one (written by hand, or broken) is handed over as it is: the worker
    dead-letters what it cannot decode."""
    original = data = body.encode("utf-8", "surrogateescape")
    if B64.fullmatch(data):  # kombu's ``sqs_base64_encoding`` (its default, and Celery's)
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            pass
    try:
        envelope = json.loads(data)
    except ValueError:
        return original
    props = envelope.get("properties") if isinstance(envelope, dict) else None
    if not isinstance(props, dict):
        return original
    props["delivery_tag"] = tag
    props["delivery_info"] = {"exchange": "", "routing_key": queue, "redelivered": redelivered}
    return json_dumps(envelope).encode()


def bounded(url: str, seconds: float) -> str:
    """``url`` whose SQS calls each give up after about ``seconds`` (tqctl's ``--timeout``), not
    after the worker's read timeout (long enough to outlast a long poll): an endpoint that takes
    connections and never answers fails in seconds, not in a minute and a half."""
    options: dict[str, Any] = dict(getattr(url, "options", {}))
    given: dict[str, Any] = dict(options.get("sqs_options") or {})
    config = {**(given.get("client-config") or {}), "connect_timeout": min(seconds, 5.0), "read_timeout": seconds}
    options["sqs_options"] = {**given, "client-config": config}
    return ConnectionURL(str(url), options)


def _check_url(url: str) -> None:
    """A secret key with a ``/`` in it must be quoted (Celery's docs say so): unquoted, the URL
    parses wrong and a masked form would show the key. Said without quoting the URL."""
    try:
        netloc = urlsplit(url).netloc
        urlsplit(url).port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        netloc = ""
    rest = url.split("://", 1)[-1]
    if ("@" in rest and "@" not in netloc) or (":" in rest and not netloc):
        raise ImproperlyConfigured(
            "the sqs:// URL does not parse: quote the access key and secret key "
            "(kombu.utils.url.safequote; a '/' in a secret key as %2F), as Celery's docs say"
        )


def _quietly(call: Callable[[], object]) -> None:
    try:
        call()
    except Exception:  # closing what may already be gone
        log.debug("ignored while closing an SQS connection", exc_info=True)
