"""Which work-sharing child holds which fetched message, in memory the parent can read after a
child dies (an anonymous shared mapping, inherited by fork).

Every message a work-sharing child fetched is in the worker's in-flight record on Redis and in
one slot here, from the fetch until its settlement reached the broker. A slot's state says what
the parent must do with it if the process that holds it dies:

- FETCHED: in a batch its fetcher has not shared yet (the in-queue may or may not hold it);
- SHARED: in the shared in-queue, nobody's yet;
- TAKEN: taken by ``pid``, not started: back to its queue;
- RUNNING: started by ``pid``: lost with it (requeued or failed, as any lost task);
- DONE: finished by ``pid``, its ack not sent yet: acked.

Each child allocates from its own range of slots, so no lock is shared between processes (a lock
held by a killed child would stop the others for good). Writes are single machine words, each
made before the step it records.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass

FREE, FETCHED, SHARED, TAKEN, RUNNING, DONE = range(6)
TAG_BYTES = 48  # a fetch tag is "p<pid>-<fetch number>.<n>": far shorter
RAW_BYTES = 64 * 1024  # per lane: the early-acked message its child runs (gone from Redis by then)


@dataclass(frozen=True)
class Held:
    slot: int
    state: int
    pid: int
    tag: str
    deadline: float
    started: float  # wall clock, for ``inspect active``'s time_start


class Slots:
    def __init__(self, ranges: int, per_range: int) -> None:
        self.ranges, self.per_range = ranges, per_range
        n = ranges * per_range
        self._map = mmap.mmap(-1, n * (4 + 4 + 8 + 8 + TAG_BYTES) + ranges * 16 + ranges * (8 + RAW_BYTES))
        view = memoryview(self._map)
        self.state = view[: n * 4].cast("i")
        self.pid = view[n * 4 : n * 8].cast("i")
        self.deadline = view[n * 8 : n * 16].cast("d")
        self.started = view[n * 16 : n * 24].cast("d")
        self._tags = view[n * 24 : n * (24 + TAG_BYTES)]
        # Per lane, each written by that lane's process only: messages it brought into the worker
        # (fetched) and messages it settled. Their difference, summed, is what the worker holds.
        counters = view[n * (24 + TAG_BYTES) : n * (24 + TAG_BYTES) + ranges * 16]
        self.brought = counters[: ranges * 8].cast("q")
        self.settled = counters[ranges * 8 :].cast("q")
        running = view[n * (24 + TAG_BYTES) + ranges * 16 :]
        self._raw_len = running[: ranges * 8].cast("q")
        self._raw = running[ranges * 8 :]

    def keep_running(self, lane: int, value: bytes) -> bool:
        """The message ``lane``'s child runs after an early ack (its in-flight record is gone), so
        the parent can settle it if the child dies; False if it is too large to keep here."""
        if len(value) > RAW_BYTES:
            self._raw_len[lane] = 0
            return False
        self._raw[lane * RAW_BYTES : lane * RAW_BYTES + len(value)] = value
        self._raw_len[lane] = len(value)
        return True

    def running_message(self, lane: int) -> bytes | None:
        n = self._raw_len[lane]
        return bytes(self._raw[lane * RAW_BYTES : lane * RAW_BYTES + n]) if n else None

    def holding(self) -> int:
        """Messages fetched into the worker and not settled yet (shared, taken or running)."""
        return sum(self.brought) - sum(self.settled)

    def allocate(self, lane: int, n: int) -> list[int]:
        """Up to ``n`` free slots of ``lane``'s range (the child's own); fewer if that many are in use."""
        start = lane * self.per_range
        state = self.state
        return [slot for slot in range(start, start + self.per_range) if state[slot] == FREE][:n]

    def hold(self, slot: int, tag: str, state: int, pid: int) -> None:
        data = tag.encode()[:TAG_BYTES].ljust(TAG_BYTES, b"\0")
        self._tags[slot * TAG_BYTES : (slot + 1) * TAG_BYTES] = data
        self.pid[slot] = pid
        self.deadline[slot] = 0.0
        self.state[slot] = state  # last: a reader that sees the state sees the tag

    def mark(self, slot: int, state: int, pid: int = 0, deadline: float = 0.0, started: float = 0.0) -> None:
        self.pid[slot] = pid
        self.deadline[slot] = deadline
        self.started[slot] = started
        self.state[slot] = state

    def free(self, slot: int) -> None:
        self.state[slot] = FREE

    def tag(self, slot: int) -> str:
        return bytes(self._tags[slot * TAG_BYTES : (slot + 1) * TAG_BYTES]).rstrip(b"\0").decode()

    def held(self) -> Iterator[Held]:
        for slot in range(self.ranges * self.per_range):
            state = self.state[slot]
            if state != FREE:
                yield Held(slot, state, self.pid[slot], self.tag(slot), self.deadline[slot], self.started[slot])
