"""The work-sharing pool's slot table: what a parent reads after a child dies must be what the
child wrote, lane by lane, without a lock between them."""

from __future__ import annotations

import os

from engine.worker.slots import FREE, RAW_BYTES, RUNNING, SHARED, TAKEN, Slots


def test_each_lane_allocates_only_its_own_free_slots() -> None:
    slots = Slots(ranges=3, per_range=4)
    first = slots.allocate(1, 10)
    assert first == [4, 5, 6, 7]  # lane 1's range, no more than it has
    slots.hold(5, "p1-1.1", SHARED, 0)
    assert slots.allocate(1, 10) == [4, 6, 7]
    assert slots.allocate(0, 2) == [0, 1] and slots.allocate(2, 1) == [8]


def test_a_held_slot_reads_back_with_its_state_tag_pid_and_deadline() -> None:
    slots = Slots(ranges=2, per_range=2)
    slots.hold(3, "p4242-17.3", TAKEN, 4242)
    slots.mark(3, RUNNING, 4242, deadline=123.5, started=1_700_000_000.25)
    [held] = list(slots.held())
    assert (held.slot, held.state, held.pid, held.tag) == (3, RUNNING, 4242, "p4242-17.3")
    assert (held.deadline, held.started) == (123.5, 1_700_000_000.25)
    slots.free(3)
    assert list(slots.held()) == [] and slots.state[3] == FREE


def test_holding_is_what_was_brought_in_less_what_was_settled_over_every_lane() -> None:
    slots = Slots(ranges=3, per_range=4)
    slots.brought[0] += 5
    slots.brought[2] += 3
    slots.settled[1] += 4  # a child settles what another fetched
    assert slots.holding() == 4


def test_a_forked_child_writes_what_its_parent_reads() -> None:
    slots = Slots(ranges=2, per_range=2)
    pid = os.fork()
    if pid == 0:  # the child: one running message, kept for the parent
        slots.hold(2, "p9-1.1", RUNNING, os.getpid())
        slots.keep_running(1, b"kept message")
        os._exit(0)
    os.waitpid(pid, 0)
    [held] = list(slots.held())
    assert (held.tag, held.state, held.pid) == ("p9-1.1", RUNNING, pid)
    assert slots.running_message(1) == b"kept message"


def test_a_message_too_large_to_keep_is_not_kept_half() -> None:
    slots = Slots(ranges=1, per_range=1)
    slots.keep_running(0, b"small")
    assert slots.keep_running(0, b"x" * (RAW_BYTES + 1)) is False
    assert slots.running_message(0) is None  # never the earlier message in its place
