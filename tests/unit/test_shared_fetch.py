"""A work-sharing child's broker (``SharedFetch``): every message it fetched holds a slot until the
broker has it back or settled, so ``Slots.holding`` (the parent's prefetch window) stays true."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import pytest

from engine.broker.base import Delivery
from engine.worker.child import Shared
from engine.worker.sharing import SharedFetch
from engine.worker.slots import Slots


class RecordingBroker:
    """Stands in for the Redis broker's bookkeeping only: which tags it gave out and took back."""

    def __init__(self, waiting: int) -> None:
        self.waiting = waiting
        self.tag_base = ""
        self.forsaken: list[str] = []
        self.handed_back: list[str] = []
        self.fail_reconcile = False
        self.fail_ack = False
        self.acked: list[str] = []

    def fetch(
        self, owner: str, queues: Sequence[str], limit: int, timeout: float, acks: Sequence[str] = ()
    ) -> list[Delivery]:
        n = min(limit, self.waiting)
        self.waiting -= n
        return [Delivery(f"{self.tag_base}1.{i}", "q", b"{}") for i in range(n)]

    def forsake(self, tags: Sequence[str]) -> None:
        self.forsaken.extend(tags)

    def reconcile(self, owner: str) -> int:
        if self.fail_reconcile:
            raise ConnectionError("broker away")
        moved, self.forsaken = self.forsaken, []
        self.handed_back.extend(moved)
        return len(moved)

    def ack(self, owner: str, tags: Sequence[str]) -> None:
        if self.fail_ack:
            raise ConnectionError("broker away")
        self.acked.extend(tags)


@pytest.fixture
def inqueue() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    yield r, w
    os.close(r)
    os.close(w)


def test_a_forsaken_message_holds_its_slot_until_reconcile_hands_it_back(inqueue: tuple[int, int]) -> None:
    slots = Slots(ranges=2, per_range=8)
    broker = RecordingBroker(waiting=1)
    fetch = SharedFetch(broker, inqueue[0], inqueue[1], 4, slots, 0, Shared())  # type: ignore[arg-type]
    [delivery] = fetch.fetch("w1", ["q"], 1, 0)
    assert slots.holding() == 1

    fetch.forsake([delivery.tag])  # its sorting failed on a broker error
    assert slots.holding() == 1  # still in the in-flight record: still the worker's

    broker.fail_reconcile = True
    with pytest.raises(ConnectionError):
        fetch.reconcile("w1")
    assert slots.holding() == 1  # not handed back yet: kept for the next try

    broker.fail_reconcile = False
    assert fetch.reconcile("w1") == 1
    assert broker.handed_back == [delivery.tag]
    assert slots.holding() == 0 and slots.allocate(0, 8) == list(range(8))


def test_acks_held_for_the_next_fetch_survive_a_failed_ack(inqueue: tuple[int, int]) -> None:
    slots = Slots(ranges=2, per_range=8)
    broker = RecordingBroker(waiting=1)
    fetch = SharedFetch(broker, inqueue[0], inqueue[1], 4, slots, 0, Shared())  # type: ignore[arg-type]
    [delivery] = fetch.fetch("w1", ["q"], 1, 0)
    fetch.stopping = lambda: True  # the next fetch only takes the ack along: nothing more is fetched
    assert fetch.fetch("w1", ["q"], 1, 0, acks=[delivery.tag]) == []
    assert fetch.pending_acks() == [delivery.tag]

    broker.fail_ack = True  # upkeep's ack meets a broker blip
    with pytest.raises(ConnectionError):
        fetch.ack("w1", [])
    assert fetch.pending_acks() == [delivery.tag] and slots.holding() == 1  # not lost: still to send

    broker.fail_ack = False
    fetch.ack("w1", [])
    assert broker.acked == [delivery.tag]
    assert slots.holding() == 0 and fetch.pending_acks() == []
