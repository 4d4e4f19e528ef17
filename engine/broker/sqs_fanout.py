"""A worker's broadcast channels on an SQS broker: none, as in Celery.

SQS has no fanout of its own, and Celery on SQS sends no events and hears no remote control
(its docs say so). A worker on SQS still keeps revokes and task history, which are stored state
rather than broadcasts, on the Redis result backend (``client``), as on an AMQP broker. Events
are dropped here and the remote-control listener hears nothing, so the worker runs unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from engine.broker.fanout import RedisFanout


class SqsFanout(RedisFanout):
    """No broadcasts; ``client`` (revokes, history) on the Redis result backend."""

    def publish(self, exchange: str, routing_key: str, raw: bytes) -> None:
        """Events have nowhere to go on SQS."""

    def reply(self, oid: str, raw: bytes, exchange: str = "reply.celery.pidbox") -> None:
        """No request ever arrives, so no reply is ever sent."""

    def subscribe(self, patterns: Iterable[str]) -> Any:
        return Silence()


class Silence:
    """Redis ``PubSub``'s ``get_message``/``close`` for a channel nothing is ever sent on."""

    def __init__(self) -> None:
        self._closed = threading.Event()

    def get_message(self, timeout: float = 0.0) -> dict[str, Any] | None:
        self._closed.wait(timeout)
        return None

    def close(self) -> None:
        self._closed.set()
