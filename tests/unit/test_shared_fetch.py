"""A work-sharing child's broker (``SharedFetch``): every message it fetched holds a slot until the
broker has it back or settled, so ``Slots.holding`` (the parent's prefetch window) stays true."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence

import pytest

from engine.broker.base import Delivery
from engine.worker.child import Shared
from engine.worker.sharing import SharedFetch, share
from engine.worker.slots import Slots
from engine.worker.turn import FetchTurn


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
    fetch = SharedFetch(broker, inqueue[0], inqueue[1], 4, slots, 0, Shared(), FetchTurn())  # type: ignore[arg-type]
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
    fetch = SharedFetch(broker, inqueue[0], inqueue[1], 4, slots, 0, Shared(), FetchTurn())  # type: ignore[arg-type]
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


@pytest.fixture
def aside() -> Iterator[int]:
    """A pipe no child reads: where a Feeder whose fetch the test does not want shared puts it
    (made before ``feeder`` forks, so that process has it too)."""
    r, w = os.pipe()
    yield w
    os.close(r)
    os.close(w)


@pytest.fixture
def feeder() -> Iterator[tuple[FetchTurn, int, int, int]]:
    """The Feeder's turn held by another process, as the parent's Feeder mid-fetch: the turn, that
    process's pid, a pipe end that tells it to share one message and give the turn up, and one
    that says it has."""
    turn = FetchTurn()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            turn.try_feeder()
            os.write(ready_w, b"1")
            inq_w = int(os.read(go_r, 16))
            share(inq_w, [(3, Delivery("feeder.1", "q", b"{}"))], 0)
            turn.give()
            os.write(ready_w, b"2")
            signal.pause()
        finally:
            os._exit(0)
    os.read(ready_r, 1)
    try:
        yield turn, pid, go_w, ready_r
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):  # unless the test killed it
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)
        turn.close()


def test_a_child_does_not_fetch_while_the_feeder_does_and_takes_what_it_shares(
    inqueue: tuple[int, int], feeder: tuple[FetchTurn, int, int, int]
) -> None:
    """What the Feeder fetched reaches the in-queue before any child fetches again: a child's
    fetch in the meantime could start a later message first (``engine.worker.turn``)."""
    turn, _, go, given = feeder
    slots = Slots(ranges=2, per_range=8)
    broker = RecordingBroker(waiting=3)
    fetch = SharedFetch(broker, inqueue[0], inqueue[1], 4, slots, 0, Shared(), turn)  # type: ignore[arg-type]
    assert fetch.fetch("w1", ["q"], 1, 0) == []  # right after a task: not waited for
    assert broker.waiting == 3

    os.write(go, str(inqueue[1]).encode())  # the Feeder shares its message, then gives up its turn
    [shared] = fetch.fetch("w1", ["q"], 1, 5.0)
    assert shared.tag == "feeder.1" and broker.waiting == 3

    assert os.read(given, 1) == b"2"
    [first] = fetch.fetch("w1", ["q"], 1, 0)  # the turn is free: this child fetches again
    assert first.tag.endswith("1.0") and broker.waiting == 0


def test_a_child_waiting_for_the_turn_fetches_once_the_feeder_gives_it_up_with_nothing_shared(
    inqueue: tuple[int, int], aside: int, feeder: tuple[FetchTurn, int, int, int]
) -> None:
    """The Feeder's fetch found nothing for this worker: a child waiting on the in-queue for it
    fetches for itself as soon as the turn is free, not after its wait runs out."""
    turn, _, go, _ = feeder
    slots = Slots(ranges=2, per_range=8)
    broker = RecordingBroker(waiting=3)
    fetch = SharedFetch(broker, inqueue[0], inqueue[1], 4, slots, 0, Shared(), turn)  # type: ignore[arg-type]
    gives_up = threading.Timer(0.1, os.write, (go, str(aside).encode()))  # while the child waits
    gives_up.start()
    try:
        [first] = fetch.fetch("w1", ["q"], 1, 30.0)
    finally:
        gives_up.join()
    assert first.tag.endswith("1.0") and broker.waiting == 0
    [second] = fetch.fetch("w1", ["q"], 1, 0)  # the rest of its batch went into the in-queue
    assert second.tag.endswith("1.1")


def test_a_dead_feeder_leaves_the_turn_free(feeder: tuple[FetchTurn, int, int, int]) -> None:
    turn, pid, _, _ = feeder
    assert not turn.try_child()
    os.kill(pid, signal.SIGKILL)  # killed mid-fetch: the kernel drops its lock
    os.waitpid(pid, 0)
    assert turn.try_child()
    turn.give()


def test_children_fetch_together_and_the_feeder_alone() -> None:
    turn = FetchTurn()

    def elsewhere(attempt: Callable[[], bool]) -> bool:
        pid = os.fork()
        if pid == 0:
            os._exit(0 if attempt() else 1)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0

    try:
        assert turn.try_child()  # one child fetching
        assert elsewhere(turn.try_child)  # another may too
        assert not elsewhere(turn.try_feeder)  # the Feeder may not
        turn.give()
        assert turn.try_feeder()  # the Feeder fetching
        assert not elsewhere(turn.try_child) and not elsewhere(turn.try_feeder)
        turn.give()
        assert elsewhere(turn.try_child)
    finally:
        turn.close()
