"""Our client's canvas run by a real Celery 5.7 worker: what Celery's own suite found (mode c).

Celery's ``t/integration/test_canvas.py`` with our client and a Celery worker (``tests/celery_suite``,
mode c) showed four canvases whose messages meant something else to Celery than what Celery's
client sends for them: a chord followed by a task ran the task once per member of its group body;
the errback of a chord was not given to a chord nested in its header; ``link_error=`` given to a
chord whose body is a chord never ran; and a chord's errback children came back without their
group. Each test here runs the canvas on ``tests.apps.celery_canvas`` (a real ``celery worker``,
solo, so tasks run in the order they are queued) and counts what ran after a sentinel task.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from engine import GroupResult, chain, chord, group
from tests.integration.harness import CeleryWorkerProcess, wait_for
from tests.integration.test_canvas_celery import ledger_lines, start_celery_worker

pytestmark = pytest.mark.integration

__all__ = ["start_celery_worker"]  # the fixture, shared with test_canvas_celery

WAIT = 30


def _after_sentinel(canvas, ledger: Path, kind: str) -> list[list[str]]:
    """The ledger's ``kind`` lines once everything queued before now has run (the worker is solo)."""
    assert canvas.log_result.si("sentinel").delay().get(timeout=WAIT) == "sentinel"
    return [line[:2] for line in ledger_lines(ledger, kind)]


def test_a_task_after_a_chord_with_a_group_body_runs_once(
    canvas, start_celery_worker: Callable[..., CeleryWorkerProcess], ledger: Path
) -> None:
    start_celery_worker("celery")
    header = [canvas.add.si(1, 1), canvas.add.si(2, 2)]
    flow = chain(chord(header, group(canvas.log_result.s(), canvas.log_result.s())), canvas.log_result.si("after"))
    assert flow.delay().get(timeout=WAIT) == "after"
    assert [line for line in _after_sentinel(canvas, ledger, "link") if line[1] == "after"] == [["link", "after"]]


def test_a_chord_errback_reaches_a_chord_in_its_header(
    canvas, start_celery_worker: Callable[..., CeleryWorkerProcess], ledger: Path
) -> None:
    start_celery_worker("celery")
    inner = chord([canvas.add.si(1, 1), canvas.boom.si(7)], canvas.add.si(0, 0))
    outer = chord(group([canvas.add.si(3, 3), inner]), canvas.log_result.si("body"))
    outer.link_error(canvas.on_error.si("eb"))
    outer.delay()
    wait_for(lambda: ledger_lines(ledger, "errback"), WAIT, "the errback of the nested chord")
    assert _after_sentinel(canvas, ledger, "errback") == [["errback", "eb"]]
    assert [line for line in ledger_lines(ledger, "link") if line[1] == "body"] == []


def test_link_error_given_to_a_chord_with_a_chord_body_runs_on_header_failure(
    canvas, start_celery_worker: Callable[..., CeleryWorkerProcess], ledger: Path
) -> None:
    start_celery_worker("celery")
    body = chord([canvas.tsum.s(), canvas.tsum.s()], canvas.tsum.s())
    result = chord([canvas.add.si(1, 1), canvas.boom.si(2)], body).apply_async(link_error=canvas.on_error.si("opt"))
    with pytest.raises(ValueError, match="boom 2"):
        result.get(timeout=WAIT)
    wait_for(lambda: ledger_lines(ledger, "errback"), WAIT, "the chord's errback")
    assert _after_sentinel(canvas, ledger, "errback") == [["errback", "opt"]]


def test_the_children_of_a_failed_chord_body_include_its_errback_group(
    canvas, start_celery_worker: Callable[..., CeleryWorkerProcess]
) -> None:
    start_celery_worker("celery")
    body = canvas.log_result.s().on_error(canvas.on_error.s())
    result = chord([canvas.add.s(1, 2), canvas.boom.s(3)])(body)
    with pytest.raises(ValueError, match="boom 3"):
        result.get(timeout=WAIT)
    wait_for(lambda: result.children and result.children[0].children, WAIT, "the errback group among the children")
    errbacks = result.children[0]
    assert isinstance(errbacks, GroupResult)
    (errback,) = errbacks.children
    assert errback.get(timeout=WAIT) is None
