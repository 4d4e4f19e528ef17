"""Chords shared with real Celery 5.7 workers: header on one implementation, body on the other.

Two queues keep the sides apart: a real ``celery worker`` (``tests.apps.celery_canvas``, the same task
names and functions) consumes ``cel`` and our worker consumes ``tq``; each signature is routed with
``.set(queue=...)``. Both a tqctl client and a real Celery client apply the chord. Afterwards the
chord's bookkeeping keys must be in Celery 5.7's finished state: ``.c`` = ``"done"``, the rest gone.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import celery
import pytest
import redis
from celery.result import AsyncResult as CeleryAsyncResult
from celery.result import GroupResult as CeleryGroupResult

from engine import GroupResult, chord
from engine.exceptions import ChordError
from engine.protocol.results import group_key
from tests.apps.celery_canvas import celery_url
from tests.integration.harness import CeleryWorkerProcess, wait_for

pytestmark = pytest.mark.integration

APP = "tests.apps.canvas"
CELERY_Q, OURS_Q = "cel", "tq"
TOTAL = sum(2 * i for i in range(10))


@pytest.fixture
def celery_client(broker_url: str) -> Iterator[celery.Celery]:
    """A real Celery 5.7 client app on this test's server (signatures by task name)."""
    url = celery_url(broker_url)
    app = celery.Celery("canvas-client", broker=url, backend=url, set_as_current=False)
    app.conf.broker_connection_retry_on_startup = True
    yield app
    release_celery_results(app)
    app.close()


def release_celery_results(app: celery.Celery) -> None:
    """Settle Celery's result handles now: each unsubscribes on its server when it is collected
    (``AsyncResult.__del__``), and the backend keeps pending ones alive, possibly past the server."""
    gc.collect()
    for obj in gc.get_objects():
        if isinstance(obj, CeleryAsyncResult) and obj.app is app and obj.backend is not None:
            obj.backend.remove_pending_result(obj)
            obj.backend = None


@pytest.fixture
def start_celery_worker(
    broker_url: str, celery_processes: Callable[..., CeleryWorkerProcess]
) -> Callable[..., CeleryWorkerProcess]:
    """``python -m celery -A tests.apps.celery_canvas worker`` as a real process of its own."""

    def start(queue: str, name: str = "cel") -> CeleryWorkerProcess:
        return celery_processes("tests.apps.celery_canvas", queue, name, {"TQCTL_BROKER": broker_url})

    return start


def ledger_lines(ledger: Path, kind: str) -> list[list[str]]:
    return [line.split() for line in ledger.read_text().splitlines() if line.split()[:1] == [kind]]


def chord_keys_finished(client: redis.Redis, group_id: str) -> bool:
    """Celery 5.7's end state: ``.c`` is "done" (kept ≤ 300 s); ``.j .d .s .t`` deleted."""
    base = group_key(group_id)
    leftovers = client.exists(f"{base}.j", f"{base}.d", f"{base}.s", f"{base}.t")
    return client.get(f"{base}.c") == b"done" and leftovers == 0 and 0 < client.ttl(f"{base}.c") <= 300


def apply_chord(
    client_kind: str, canvas: Any, celery_client: celery.Celery, header_q: str, body_q: str
) -> tuple[Callable[[float], Any], str, str]:
    """Apply chord(add(i, i) for i < 10)(tsum) with the chosen client → (get, body id, group id)."""
    if client_kind == "tqctl":
        result = chord([canvas.add.s(i, i).set(queue=header_q) for i in range(10)])(canvas.tsum.s().set(queue=body_q))
        return (lambda t: result.get(timeout=t)), result.id, result.parent.id
    header = [celery_client.signature("canvas.add", args=(i, i), queue=header_q) for i in range(10)]
    body = celery_client.signature("canvas.tsum", queue=body_q)
    theirs = celery.chord(header, app=celery_client)(body)
    return (lambda t: theirs.get(timeout=t)), theirs.id, theirs.parent.id


@pytest.mark.parametrize("client_kind", ["tqctl", "celery"])
def test_header_on_celery_body_on_ours(
    client_kind: str, canvas, celery_client, start_worker, start_celery_worker, ledger: Path, redis_client: redis.Redis
) -> None:
    theirs = start_celery_worker(CELERY_Q)
    ours = start_worker("-P", "solo", "-Q", OURS_Q, app=APP)
    get, body_id, group_id = apply_chord(client_kind, canvas, celery_client, CELERY_Q, OURS_Q)
    assert get(30) == TOTAL
    assert [line[1:] for line in ledger_lines(ledger, "tsum")] == [[str(TOTAL), "10", str(ours.pid)]]
    assert theirs.log().count("Task canvas.add[") >= 10
    assert canvas.app.AsyncResult(body_id).get(timeout=5) == TOTAL
    wait_for(lambda: chord_keys_finished(redis_client, group_id), 10, "Celery 5.7's finished chord keys")


@pytest.mark.parametrize("client_kind", ["tqctl", "celery"])
def test_header_on_ours_body_on_celery(
    client_kind: str, canvas, celery_client, start_worker, start_celery_worker, ledger: Path, redis_client: redis.Redis
) -> None:
    theirs = start_celery_worker(CELERY_Q)
    start_worker("-c", "2", "-Q", OURS_Q, app=APP)
    get, body_id, group_id = apply_chord(client_kind, canvas, celery_client, OURS_Q, CELERY_Q)
    assert get(30) == TOTAL
    assert [line[1:] for line in ledger_lines(ledger, "tsum")] == [[str(TOTAL), "10", str(theirs.pid)]]
    # Celery logs the success after storing the result get() just read: wait for the line, not race it
    wait_for(lambda: f"Task canvas.tsum[{body_id}] succeeded" in theirs.log(), 10, "Celery's success log line")
    wait_for(lambda: chord_keys_finished(redis_client, group_id), 10, "Celery 5.7's finished chord keys")


def test_header_failing_on_celery_fails_the_body_for_our_client(
    canvas, start_worker, start_celery_worker, ledger: Path
) -> None:
    start_celery_worker(CELERY_Q)
    start_worker("-P", "solo", "-Q", OURS_Q, app=APP)
    header = [canvas.add.s(1, 1).set(queue=CELERY_Q), canvas.boom.s(5).set(queue=CELERY_Q)]
    body = canvas.tsum.s().set(queue=OURS_Q).on_error(canvas.on_error.s().set(queue=OURS_Q))
    result = chord(header)(body)
    failed_id = result.parent.results[1].id
    with pytest.raises(ValueError, match="boom 5"):  # as Celery's get(): the failed parent's own error
        result.get(timeout=30)
    with pytest.raises(ChordError, match=failed_id):  # the body itself stores the ChordError
        result.get(timeout=30, follow_parents=False)
    wait_for(lambda: ledger_lines(ledger, "errback"), 15, "the body's errback")
    assert [line[:2] for line in ledger_lines(ledger, "errback")] == [["errback", result.id]]
    assert ledger_lines(ledger, "tsum") == []


def test_saved_group_restores_across_implementations(canvas, celery_client, redis_client: redis.Redis) -> None:
    ours = GroupResult("g-ours", [canvas.app.AsyncResult(f"t{i}") for i in range(3)], app=canvas.app).save()
    restored = CeleryGroupResult.restore(ours.id, app=celery_client)
    assert [r.id for r in restored.results] == ["t0", "t1", "t2"]

    theirs = CeleryGroupResult("g-theirs", [celery_client.AsyncResult(f"c{i}") for i in range(2)], app=celery_client)
    theirs.save()
    back = GroupResult.restore("g-theirs", canvas.app)
    assert back is not None and [r.id for r in back.results] == ["c0", "c1"]
