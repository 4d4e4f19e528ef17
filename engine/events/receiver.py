"""Listening to the event stream: every event from Celery or tqctl workers, flattened."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from engine.broker.fanout import RedisFanout
from engine.protocol import events


class EventReceiver:
    def __init__(self, url: str, fanout: RedisFanout | None = None) -> None:
        # ``fanout``: another transport's broadcasts (RabbitMQ's celeryev exchange), else Redis pub/sub.
        self.fanout = fanout if fanout is not None else RedisFanout(url)
        self._pubsub = self.fanout.subscribe([self.fanout.channel(events.EXCHANGE, "#")])

    def poll(self, timeout: float = 0.1, max_messages: int = 10_000) -> list[dict[str, Any]]:
        """Events that arrive within ``timeout`` (stamped with ``local_received``)."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(out) < max_messages:
            left = deadline - time.monotonic()
            message = self._pubsub.get_message(timeout=max(left, 0.0))
            if message is None:
                if left <= 0:
                    break
                continue
            if message.get("type") in ("message", "pmessage"):
                now = time.time()
                for event in events.decode(message["data"]):
                    event["local_received"] = now
                    out.append(event)
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            yield from self.poll(1.0)

    def close(self) -> None:
        self._pubsub.close()
        self.fanout.close()
