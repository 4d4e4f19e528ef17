"""What an operator reads and changes in a cluster's stored state, whatever the transport.

The console and the CLI know queues, delayed tasks, history and results only through
``ClusterView``; each transport's layout (Redis key names and separators, RabbitMQ's passive
declares) stays in its own module here. Where the history, the failure inbox and the revokes
live depends on the transport: on Redis in the broker itself, on AMQP in the Redis result
backend (RabbitMQ keeps no state that can be read back without taking it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

from engine import resp
from engine.exceptions import BrokerUnavailable
from engine.history import History

Sign = Callable[[bytes], bytes]
# What a client of this module may see when a server is away or refuses it (for one-line errors).
NETWORK_ERRORS: tuple[type[BaseException], ...] = (resp.RedisError, OSError, BrokerUnavailable)
UNREACHABLE: tuple[type[BaseException], ...] = (resp.ConnectionError, resp.TimeoutError, resp.AuthenticationError)
SERVER_ERROR: type[BaseException] = resp.ResponseError


class QueueFigures(NamedTuple):
    name: str
    depth: int
    oldest_sent: float | None  # sent_at of the next message out (None: empty, or not known here)


class NotHere(Exception):
    """An operation this transport cannot do; the message says why, for the operator as is."""


class ClusterView(Protocol):
    url: str
    history: History | None  # None: nowhere to keep it (AMQP without a Redis result backend)
    store: Any  # the Redis client holding tqctl's own state (beat, revokes), or None
    discovery_error: str | None  # why the last ``discover`` could not list queues (None: it could)

    def ping(self) -> None: ...
    def server(self) -> str: ...
    def discover(self) -> None: ...  # the slower search for queues nobody declared (every few polls)
    def queue_names(self) -> list[str]: ...
    def queues(self, names: list[str]) -> list[QueueFigures]: ...
    def buckets(self, queue: str) -> list[dict[str, int]]: ...
    def peek(self, queue: str, limit: int = 100) -> list[dict[str, Any]]: ...
    def delayed(self, limit: int = 200) -> tuple[list[dict[str, Any]], int]: ...
    def parked(self, task_id: str) -> dict[str, Any] | None: ...  # one task in the delayed set
    def run_now(self, task_id: str, sign: Sign) -> str: ...
    def result_meta(self, task_id: str) -> dict[str, Any] | None: ...
    def close(self) -> None: ...


class BackendState:
    """tqctl's stored state on the Redis result backend, for a broker that keeps none that can be
    read back (AMQP, SQS): the client (beat, revokes), the history and task results. Empty
    (``None`` each) when there is no such backend."""

    def __init__(self, url: str | None) -> None:
        self.store: Any = None
        self.history: History | None = None
        self._results: Any = None
        if url is not None:
            from engine.backend.redis import RedisBackend

            self._results = RedisBackend(url)
            self.store = self._results.client
            self.history = History(self.store)

    def result_meta(self, task_id: str) -> dict[str, Any] | None:
        if self._results is None:
            return None
        meta = self._results.get_meta(task_id)
        return meta if isinstance(meta, dict) else None

    def close(self) -> None:
        if self._results is not None:
            self._results.client.close()


def is_amqp(url: str) -> bool:
    from engine.broker.connect import AMQP_SCHEMES

    return urlsplit(str(url).split(";", 1)[0]).scheme.lower() in AMQP_SCHEMES


def is_sqs(url: str) -> bool:
    from engine.broker.connect import SQS_SCHEMES

    return urlsplit(str(url).split(";", 1)[0]).scheme.lower() in SQS_SCHEMES


def open_view(
    broker_url: str, backend_url: str | None = None, client: Any = None, api_url: str | None = None
) -> ClusterView:
    """The view for ``broker_url``; ``backend_url`` is where an AMQP or SQS cluster keeps its state,
    ``api_url`` RabbitMQ's management API (default: ``TQCTL_BROKER_API``), which names its queues."""
    if is_amqp(broker_url):
        from engine.broker.amqp_inspect import AmqpView
        from engine.config import env_broker_api

        return AmqpView(broker_url, backend_url, api_url or env_broker_api())
    if is_sqs(broker_url):
        from engine.broker.sqs_inspect import SqsView

        return SqsView(broker_url, state_url(broker_url, backend_url))
    from engine.broker.redis_inspect import RedisView

    return RedisView(broker_url, client)


def state_url(broker_url: str, backend_url: str | None) -> str | None:
    """Where tqctl's stored state (revokes, history, failure inbox) is: the broker on Redis, the
    Redis result backend on AMQP and SQS (None: such a broker without one)."""
    if not is_amqp(broker_url) and not is_sqs(broker_url):
        return broker_url
    from engine.redisconn import REDIS_SCHEMES

    scheme = urlsplit(str(backend_url or "")).scheme.lower()
    return backend_url if backend_url and scheme in REDIS_SCHEMES else None


def open_fanout(broker_url: str, backend_url: str | None = None) -> Any:
    """Broadcasts (events, remote control) for a client: Redis pub/sub, or RabbitMQ's exchanges
    with revokes stored on the Redis result backend when there is one."""
    if not is_amqp(broker_url):
        from engine.broker.fanout import RedisFanout

        return RedisFanout(broker_url)
    from engine.broker.amqp_fanout import AmqpFanout

    return AmqpFanout(broker_url, state_url(broker_url, backend_url))


def envelope_headers(raw: bytes) -> dict[str, Any]:
    """Headers and a few properties of a queued message, without decoding its body."""
    try:
        envelope = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {"_error": "not JSON"}
    if not isinstance(envelope, dict):
        return {"_error": "not an object"}
    headers = envelope.get("headers") or {}
    props = envelope.get("properties") or {}
    out = dict(headers) if isinstance(headers, dict) else {}
    if isinstance(props, dict):
        out.setdefault("priority", props.get("priority"))
    out["_size"] = len(raw)
    return out


def as_float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def delayed_row(headers: dict[str, Any], eta: float, queue: str) -> dict[str, Any]:
    return {
        "id": headers.get("id"),
        "name": headers.get("task"),
        "eta": eta,
        "queue": queue,
        "args": headers.get("argsrepr"),
        "kwargs": headers.get("kwargsrepr"),
    }


def peek_row(headers: dict[str, Any], priority: int | None) -> dict[str, Any]:
    return {
        "id": headers.get("id"),
        "name": headers.get("task"),
        "args": headers.get("argsrepr"),
        "kwargs": headers.get("kwargsrepr"),
        "eta": headers.get("eta"),
        "sent_at": as_float(headers.get("sent_at")),
        "priority": priority,
        "retries": headers.get("retries"),
        "origin": headers.get("origin"),
        "size": headers.get("_size"),
        "error": headers.get("_error"),
    }
