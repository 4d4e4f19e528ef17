"""Canvas (chain, group, chord, chunks, map, links) run end to end by real worker processes.

Every test sends from this process with the ``tests.apps.canvas`` app and reads results back from
the session's real server; workers are real ``tqctl worker`` processes. Callbacks that must run an
exact number of times write a line to the ledger file, which is the evidence read here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu.exceptions import EncodeError

from engine import GroupResult, chain, chord, group, signature
from engine.exceptions import ChordError
from engine.protocol.results import group_key
from engine.workflows import Chord
from tests.integration.harness import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.amqp_too]

APP = "tests.apps.canvas"


def ledger_lines(ledger: Path, kind: str) -> list[list[str]]:
    """Ledger lines of one kind (``tsum``, ``link``, ``errback``), split into words."""
    return [line.split() for line in ledger.read_text().splitlines() if line.split()[:1] == [kind]]


def settle(canvas: Any, rounds: int = 2) -> None:
    """Instead of sleeping until a duplicate "would have landed": a sentinel task sent after
    everything, waited for, ``rounds`` times. One queue is first in, first out, so once a sentinel
    has run, whatever was queued before it has been taken; a second round covers what those
    published in turn (a link, an errback, a chord body)."""
    for _ in range(rounds):
        assert canvas.add.delay(0, 0).get(timeout=30) == 0


# -- the basic forms ----------------------------------------------------------------------------


def test_chain_passes_each_result_on_and_keeps_its_parents(canvas, start_worker) -> None:
    start_worker("-c", "2", app=APP)
    result = chain(canvas.add.s(1, 2), canvas.mul.s(10), canvas.add.s(5)).delay()
    assert result.get(timeout=15) == 35
    assert result.parent is not None and result.parent.parent is not None
    assert result.parent.get(timeout=5) == 30
    assert result.parent.parent.get(timeout=5) == 3
    assert result.parent.parent.parent is None
    # the arguments given to the chain go to its first step
    assert chain(canvas.add.s(1), canvas.mul.s(3)).delay(4).get(timeout=15) == 15


def test_pipe_chain_immutable_step_ignores_the_parent_result(canvas, start_worker) -> None:
    start_worker("-c", "2", app=APP)
    result = (canvas.add.s(2, 2) | canvas.mul.s(10) | canvas.add.si(1, 1)).apply_async()
    assert result.get(timeout=15) == 2
    assert result.parent.get(timeout=5) == 40


def test_chord_called_with_its_body(canvas, start_worker, ledger: Path) -> None:
    start_worker("-c", "4", app=APP)
    result = chord([canvas.add.s(i, i) for i in range(10)])(canvas.tsum.s())
    assert result.get(timeout=20) == 90
    assert isinstance(result.parent, GroupResult)
    assert result.parent.get(timeout=5) == [2 * i for i in range(10)]
    assert [line[:3] for line in ledger_lines(ledger, "tsum")] == [["tsum", "90", "10"]]


def test_group_piped_into_a_task_is_a_chord(canvas, start_worker, ledger: Path) -> None:
    start_worker("-c", "4", app=APP)
    workflow = group(canvas.add.s(i, i) for i in range(5)) | canvas.tsum.s()
    assert isinstance(workflow, Chord)
    result = workflow.delay()
    assert result.get(timeout=20) == 20
    assert [line[:3] for line in ledger_lines(ledger, "tsum")] == [["tsum", "20", "5"]]


def test_a_group_that_cannot_be_sent_whole_sends_no_member(canvas, start_worker) -> None:
    """A group's members go out together once all are built: a member whose arguments cannot be
    encoded stops the send before any sibling reaches the queue (to run without its group)."""
    members = [canvas.add.s(i, i) for i in range(5)] + [canvas.add.s(object(), 1), canvas.add.s(9, 9)]
    with pytest.raises(EncodeError, match="not JSON serializable"):
        group(members).apply_async()
    assert canvas.app.broker.queue_depth("celery") == 0
    start_worker("-c", "2", app=APP)
    sent = group(canvas.add.s(i, i) for i in range(20)).apply_async()
    assert sent.get(timeout=20) == [2 * i for i in range(20)]


def test_chunks_as_a_group(canvas, start_worker) -> None:
    start_worker("-c", "4", app=APP)
    result = canvas.add.chunks(zip(range(100), range(100), strict=True), 10).group().delay()
    assert isinstance(result, GroupResult) and len(result) == 10
    parts = result.get(timeout=20)
    assert [len(part) for part in parts] == [10] * 10
    assert [value for part in parts for value in part] == [2 * i for i in range(100)]


def test_map_and_starmap(canvas, start_worker) -> None:
    start_worker("-c", "2", app=APP)
    assert canvas.tsum.map([[1, 2], [3, 4], []]).delay().get(timeout=15) == [3, 7, 0]
    assert canvas.add.starmap([(1, 2), (3, 4), (10, 20)]).delay().get(timeout=15) == [3, 7, 30]


def test_link_runs_with_the_result_and_link_error_on_failure(canvas, start_worker, ledger: Path) -> None:
    start_worker("-c", "2", app=APP)
    ok = canvas.add.apply_async((2, 2), link=canvas.log_result.s(), link_error=canvas.on_error.s())
    assert ok.get(timeout=15) == 4
    bad = canvas.boom.apply_async((7,), link=canvas.log_result.s(), link_error=canvas.on_error.s())
    with pytest.raises(ValueError, match="boom 7"):
        bad.get(timeout=15)
    wait_for(lambda: ledger_lines(ledger, "link") and ledger_lines(ledger, "errback"), 15, "link and errback")
    settle(canvas)
    assert [line[:2] for line in ledger_lines(ledger, "link")] == [["link", "4"]]
    assert [line[:2] for line in ledger_lines(ledger, "errback")] == [["errback", bad.id]]


# -- signatures ---------------------------------------------------------------------------------


def test_set_queue_and_countdown_are_respected(canvas, start_worker) -> None:
    start_worker("-c", "2", "-Q", "other", app=APP)  # nothing consumes the default queue
    sent = time.monotonic()
    result = canvas.add.s(1, 2).set(queue="other", countdown=2).delay()
    assert result.get(timeout=15) == 3
    assert time.monotonic() - sent >= 1.9  # not run before its countdown
    immutable = canvas.mul.si(3, 4).set(queue="other")
    assert immutable.delay().get(timeout=15) == 12


def test_clone_and_signature_by_name(canvas, start_worker) -> None:
    start_worker("-c", "2", app=APP)
    base = canvas.add.s(2)
    copy = base.clone((3,))
    copy.set(queue="nowhere")
    assert base["args"] == (2,) and base.options == {}
    assert copy["args"] == (3, 2) and copy.options == {"queue": "nowhere"}
    assert base.clone((5,)).delay().get(timeout=15) == 7
    by_name = signature("canvas.add", args=(4, 5), app=canvas.app)
    assert by_name.delay().get(timeout=15) == 9
    assert canvas.app.signature("canvas.mul", (3, 4)).delay().get(timeout=15) == 12
    # Celery's form: options given as keywords
    assert signature("canvas.add", args=(1, 1), countdown=0.1, app=canvas.app).options == {"countdown": 0.1}
    assert signature("canvas.add", args=(1, 1), countdown=0.1, app=canvas.app).delay().get(timeout=15) == 2


# -- GroupResult --------------------------------------------------------------------------------


def test_group_result_reads_in_header_order_and_saves(canvas, start_worker, redis_client: redis.Redis) -> None:
    start_worker("-c", "4", app=APP)
    # later members finish first, yet results read in header order
    result = group(canvas.slow_add.s(i, 0, delay=0.2 * (4 - i)) for i in range(5)).delay()
    assert isinstance(result, GroupResult) and not result.ready()
    assert result.join(timeout=15) == [0, 1, 2, 3, 4]
    assert result.ready() and result.successful() and not result.failed()
    assert result.completed_count() == 5

    assert result.save() is result
    stored = redis_client.get(group_key(result.id))
    assert stored is not None
    saved = json.loads(stored)
    assert saved == {"result": [[result.id, None], [[[r.id, None], None] for r in result.results]]}
    restored = GroupResult.restore(result.id, canvas.app)
    assert restored is not None and restored.id == result.id
    assert [r.id for r in restored.results] == [r.id for r in result.results]
    assert restored.get(timeout=5) == [0, 1, 2, 3, 4]
    assert GroupResult.restore("no-such-group", canvas.app) is None


def test_group_result_with_a_failed_member(canvas, start_worker) -> None:
    start_worker("-c", "2", app=APP)
    result = group(canvas.add.s(1, 1), canvas.boom.s(2), canvas.add.s(3, 3)).delay()
    assert isinstance(result, GroupResult)
    wait_for(result.ready, 15, "the group to finish")
    assert result.failed() and not result.successful()
    assert result.completed_count() == 2
    values = result.join(timeout=5, propagate=False)
    assert values[0] == 2 and values[2] == 6
    assert isinstance(values[1], ValueError) and "boom 2" in str(values[1])
    with pytest.raises(ValueError, match="boom 2"):
        result.get(timeout=5)


# -- chord failure ------------------------------------------------------------------------------


def test_chord_header_failure_fails_the_body_and_runs_its_errback_once(canvas, start_worker, ledger: Path) -> None:
    start_worker("-c", "2", app=APP)
    body = canvas.tsum.s().on_error(canvas.on_error.s())
    result = chord([canvas.add.s(1, 1), canvas.boom.s(7), canvas.add.s(2, 2)])(body)
    assert isinstance(result.parent, GroupResult)
    failed_id = result.parent.results[1].id
    with pytest.raises(ValueError, match="boom 7"):  # as Celery's get(): the failed parent's own error
        result.get(timeout=15)
    with pytest.raises(ChordError) as info:  # the body itself stores the ChordError
        result.get(timeout=15, follow_parents=False)
    assert failed_id in str(info.value) and "boom 7" in str(info.value)
    assert result.state == "FAILURE"
    wait_for(lambda: ledger_lines(ledger, "errback"), 15, "the body's errback")
    settle(canvas)
    assert [line[:2] for line in ledger_lines(ledger, "errback")] == [["errback", result.id]]
    assert ledger_lines(ledger, "tsum") == []


def test_failed_chord_keeps_its_header_outcomes_readable(canvas, start_worker, redis_client: redis.Redis) -> None:
    """As Celery's Redis backend: after a header member fails, the chord's ``.j`` join set stays,
    so the header's outcomes can still be read (Celery's ``test_chord_on_error`` reads them)."""
    start_worker("-P", "solo", app=APP)  # one task at a time: the sentinels run after the chord settled
    result = chord([canvas.add.s(1, 2), canvas.add.s(3, 4), canvas.boom.s(9)])(canvas.tsum.s())
    with pytest.raises(ChordError):
        result.get(timeout=15, follow_parents=False)
    settle(canvas)
    assert result.parent is not None
    base = group_key(result.parent.id)
    members: list[bytes] = redis_client.zrange(f"{base}.j", 0, -1)  # type: ignore[assignment]
    parts = [json.loads(m) for m in members]
    assert [p[3] for p in parts if p[2] == "SUCCESS"] == [3, 7]
    assert [p[2] for p in parts if p[2] != "SUCCESS"] == ["FAILURE"]
    assert not redis_client.exists(f"{base}.s")  # the size goes, so a late copy cannot fail it again


def test_header_failure_calls_errbacks_of_a_chord_in_a_group_body(canvas, start_worker, ledger: Path) -> None:
    """The errback linked to a group body reaches each member; for a member that is a chord it
    lives on that chord's body, and must be called there too when the outer header fails."""
    start_worker("-c", "2", app=APP)
    inner = chord([canvas.add.si(2, 2)], canvas.tsum.s())
    workflow = chord([canvas.add.si(1, 1), canvas.boom.si(3)], group(inner, canvas.tsum.s()))
    workflow.link_error(canvas.on_error.s())
    result = workflow.apply_async()
    with pytest.raises((ValueError, ChordError)):
        result.get(timeout=15)
    wait_for(lambda: len(ledger_lines(ledger, "errback")) >= 2, 15, "an errback for each body member")
    settle(canvas)
    called = sorted(line[1] for line in ledger_lines(ledger, "errback"))
    assert isinstance(result, GroupResult)
    assert called == sorted(r.id for r in result.results)
    assert ledger_lines(ledger, "tsum") == []


# -- nesting ------------------------------------------------------------------------------------


def test_chain_inside_a_group(canvas, start_worker) -> None:
    start_worker("-c", "4", app=APP)
    result = group(
        chain(canvas.add.s(1, 1), canvas.mul.s(10)), canvas.add.s(2, 3) | canvas.mul.s(3), canvas.add.s(7, 7)
    ).delay()
    assert result.get(timeout=20) == [20, 15, 14]


def test_group_inside_a_chain(canvas, start_worker) -> None:
    start_worker("-c", "4", app=APP)
    middle = chain(canvas.add.s(1, 1), group(canvas.mul.s(10), canvas.mul.s(100)), canvas.tsum.s()).delay()
    assert middle.get(timeout=20) == 220
    last = chain(canvas.add.s(1, 1), group(canvas.mul.s(10), canvas.mul.s(100))).delay()
    assert isinstance(last, GroupResult)
    assert last.get(timeout=20) == [20, 200]
    assert last.parent is not None and last.parent.get(timeout=5) == 2


def test_chord_inside_a_chain(canvas, start_worker) -> None:
    start_worker("-c", "4", app=APP)
    inner = chord([canvas.mul.s(10), canvas.mul.s(100)], canvas.tsum.s())
    result = chain(canvas.add.s(1, 1), inner, canvas.add.s(1)).delay()
    assert result.get(timeout=20) == 221
    assert result.parent is not None and result.parent.get(timeout=5) == 220
    first = chain(chord([canvas.add.s(1, 1), canvas.add.s(2, 2)], canvas.tsum.s()), canvas.mul.s(10)).delay()
    assert first.get(timeout=20) == 60
    in_header = chord([canvas.add.s(1, 1) | canvas.mul.s(10), canvas.add.s(2, 2)], canvas.tsum.s()).delay()
    assert in_header.get(timeout=20) == 24


def test_chord_header_of_a_chain_ending_in_a_group_keeps_its_nesting(canvas, start_worker) -> None:
    """A header member that is a chain ending in a group reports that group's results as one
    value: the body gets ``[[42, 42]]``, as with Celery, not the parts flattened."""
    start_worker("-c", "2", app=APP)
    member = chain(canvas.add.s(40, 2), group(canvas.log_result.s(), canvas.log_result.s()))
    result = chord(group(member), canvas.log_result.s()).delay()
    assert result.get(timeout=20) == [[42, 42]]


# -- a chord survives a worker killed mid-header --------------------------------------------------


def test_chord_completes_once_when_a_worker_is_killed(
    canvas, start_worker, ledger: Path, redis_client: redis.Redis, transport: str
) -> None:
    w1 = start_worker("-c", "2", name="w1", app=APP)
    w2 = start_worker("-c", "2", name="w2", app=APP)
    result = chord([canvas.slow_add.s(i, i) for i in range(200)])(canvas.tsum.s())
    assert result.parent is not None
    joined = f"{group_key(result.parent.id)}.j"
    wait_for(lambda: redis_client.zcard(joined) >= 40, 20, "40 headers to finish")
    assert not result.ready()
    w1.kill_group()  # the whole process group: its pool children die with it, mid-task
    w3 = start_worker("-c", "2", name="w1-restarted", app=APP)  # w1 comes back as a new process
    assert result.get(timeout=30) == 2 * sum(range(200))
    settle(canvas)  # the killed worker's headers were handed back before the body could run
    lines = ledger_lines(ledger, "tsum")
    assert len(lines) == 1 and lines[0][1:3] == [str(2 * sum(range(200))), "200"]
    assert result.parent.get(timeout=5) == [2 * i for i in range(200)]
    if transport == "redis":  # (RabbitMQ redelivers them itself when the dead worker's connection drops)
        # the killed worker's unacked headers came back through the owner-timeout reaper
        assert "recovered" in w2.log() + w3.log()
