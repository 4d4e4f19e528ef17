"""Our client's side of the canvas against a real worker, as Celery 5.7's client behaves.

Found by Celery's own integration suite run with our client (``tests/celery_suite``, modes b and
c): the body of a chord whose header failed reports the header's own error; a generator header
is sent while it is still being read; ``ResultSet`` collects unrelated results.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine import chain, chord
from engine.exceptions import ChordError, TimeoutError
from engine.protocol.task import new_id
from engine.result import ResultSet

pytestmark = pytest.mark.integration

APP = "tests.apps.canvas"


def test_a_failed_header_raises_its_own_error_from_the_body_and_the_chain(canvas, start_worker) -> None:
    start_worker("-c", "2", app=APP)
    result = chord([canvas.add.s(1, 1), canvas.boom.s(5)])(canvas.tsum.s())
    with pytest.raises(ValueError, match="boom 5") as caught:
        result.get(timeout=20)
    assert not isinstance(caught.value, ChordError)
    # the body itself still holds Celery's ChordError, read without following its parents
    with pytest.raises(ChordError):
        result.get(timeout=20, follow_parents=False)
    steps = chain(canvas.add.s(1, 1), canvas.boom.s(), canvas.add.s(1)).delay()
    with pytest.raises(ValueError, match="boom 2"):
        steps.get(timeout=20)


def test_a_generator_header_is_sent_while_it_is_still_read(canvas, start_worker) -> None:
    start_worker("-c", "2", app=APP)
    first_id = new_id()

    def header() -> Iterator[object]:
        yield canvas.add.si(1, 1).set(task_id=first_id)
        yield canvas.add.si(2, 2)  # read ahead (as Celery) before the first is sent
        # The first member must already be on its way: it finishes while we are still generating.
        assert canvas.app.AsyncResult(first_id).get(timeout=20) == 2
        for i in range(3, 5):
            yield canvas.add.si(i, i)

    assert chord(header(), canvas.tsum.s())().get(timeout=20) == 2 + 4 + 6 + 8


def test_result_set_collects_unrelated_results(canvas, start_worker) -> None:
    start_worker("-c", "2", app=APP)
    results = ResultSet([canvas.add.delay(1, 1), canvas.add.delay(2, 2)])
    results.add(canvas.boom.delay(3))
    assert results.join(timeout=20, propagate=False)[:2] == [2, 4]
    assert results.failed() and not results.successful() and results.completed_count() == 2
    with pytest.raises(ValueError, match="boom 3"):
        results.get(timeout=20)
    assert results.join_native(timeout=0, propagate=False)[:2] == [2, 4]
    with pytest.raises(TimeoutError):
        ResultSet([canvas.app.AsyncResult(new_id())]).join_native(timeout=0, interval=30)
