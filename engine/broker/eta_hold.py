"""Messages a consumer received before their ETA and holds, unacked, until they are due.

Used by the transports that cannot park a message server-side for as long as an ETA asks (SQS's
delay stops at 15 minutes; on AMQP only the last seconds before a task is due). One heap, ordered
by ETA then arrival, so two messages due at the same instant come out in the order they came in.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Generic, TypeVar

D = TypeVar("D")


class EtaHold(Generic[D]):
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, D]] = []
        self._arrival = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, eta: float, delivery: D) -> None:
        heapq.heappush(self._heap, (eta, next(self._arrival), delivery))

    def pop_due(self, now: float, limit: int, still_held: Callable[[D], bool]) -> list[D]:
        """Up to ``limit`` due deliveries, oldest ETA first; those no longer held (acked, handed
        back, or lost with their channel) are dropped on the way, never handed out."""
        due: list[D] = []
        while self._heap and self._heap[0][0] <= now and len(due) < limit:
            delivery = heapq.heappop(self._heap)[2]
            if still_held(delivery):
                due.append(delivery)
        return due

    def listing(self, still_held: Callable[[D], bool]) -> list[tuple[float, D]]:
        """What is held now, soonest first, for ``inspect scheduled``: a copy, so the caller reads
        it outside the owner's lock; those no longer held are left out (``pop_due`` drops them)."""
        return [(eta, delivery) for eta, _, delivery in sorted(self._heap) if still_held(delivery)]

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def clear(self) -> None:
        self._heap.clear()
