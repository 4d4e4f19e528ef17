"""The chord join script on a real server: what decides when a chord's body runs, and how often."""

from __future__ import annotations

import redis

from engine.backend.chord import ChordJoin
from engine.protocol.results import group_key


def test_headers_that_finish_before_the_size_is_known_still_count(redis_client: redis.Redis) -> None:
    # Celery's client writes the size just before it sends the LAST header: the others may be done by then.
    join = ChordJoin(redis_client)
    early = [join.part_done("g1", f"t{i}", i, "SUCCESS", i) for i in range(9)]
    assert early == [None] * 9
    join.set_size("g1", 10)
    token, parts = join.part_done("g1", "t9", 9, "SUCCESS", 9)
    assert [p[0] for p in parts] == [f"t{i}" for i in range(10)] and [p[2] for p in parts] == list(range(10))
    assert join.finish("g1", token)
    assert redis_client.get(f"{group_key('g1')}.c") == b"done"


def test_a_redelivered_header_counts_once_and_the_body_fires_once(redis_client: redis.Redis) -> None:
    join = ChordJoin(redis_client)
    join.set_size("g2", 3)
    assert join.part_done("g2", "a", 0, "SUCCESS", 1) is None
    assert join.part_done("g2", "a", 0, "SUCCESS", 1) is None  # the same header again: still one of three
    assert join.part_done("g2", "b", 1, "SUCCESS", 2) is None
    claimed = join.part_done("g2", "c", 2, "SUCCESS", 3)
    assert claimed is not None
    token, parts = claimed
    assert [p[2] for p in parts] == [1, 2, 3]
    assert join.part_done("g2", "c", 2, "SUCCESS", 3) is None  # claimed: nobody else starts the body
    assert join.finish("g2", token)
    assert join.part_done("g2", "b", 1, "SUCCESS", 2) is None  # done: a late redelivery changes nothing


def test_a_frozen_chord_applied_again_counts_a_member_that_beat_the_new_size(redis_client: redis.Redis) -> None:
    # A frozen chord keeps its group id; Celery's client clears ``.c`` and writes the size only just
    # before the LAST member, so the first member of the second run can finish while ``.c`` still
    # says "done" from the first run. It must count for the second run, and start nothing itself.
    join = ChordJoin(redis_client)
    for run in range(2):
        if run == 0:
            join.set_size("g3", 2)
        first = join.part_done("g3", "a", 0, "SUCCESS", 1)
        assert first is None
        if run == 1:
            join.set_size("g3", 2)
        claimed = join.part_done("g3", "b", 1, "SUCCESS", 2)
        assert claimed is not None, f"run {run} never completed"
        token, parts = claimed
        assert [p[2] for p in parts] == [1, 2]
        assert join.finish("g3", token)


def test_a_failed_chord_keeps_its_outcomes_and_drops_its_size(redis_client: redis.Redis) -> None:
    join = ChordJoin(redis_client)
    join.set_size("g4", 2)
    assert join.part_done("g4", "a", 0, "SUCCESS", 3) is None
    claimed = join.part_done("g4", "b", 1, "FAILURE", {"exc_type": "ValueError"})
    assert claimed is not None
    assert join.finish("g4", claimed[0], keep_parts=True)
    base = group_key("g4")
    assert redis_client.zcard(f"{base}.j") == 2  # as Celery: read after the failure (test_chord_on_error)
    assert not redis_client.exists(f"{base}.s")
    assert redis_client.get(f"{base}.c") == b"done"
    assert join.part_done("g4", "b", 1, "FAILURE", {"exc_type": "ValueError"}) is None
