"""Canvas as Celery 5.7 runs it, on our prefork worker: the root causes of issue 12, one test each.

Each test sends a workflow (with a real Celery 5.7 client where the shape is Celery's own) and
reads the outcome a user waits for; on the old worker each one hung, died or returned wrong values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import celery
import pytest

from engine import chain, chord, group
from engine.exceptions import ChordError
from tests.integration.conftest import client_app
from tests.integration.harness import CeleryWorkerProcess, WorkerProcess, wait_for
from tests.integration.test_canvas_celery import release_celery_results

pytestmark = pytest.mark.integration

APP = "tests.apps.workflows"
WAIT = 30  # generous: a loaded machine; a hang shows as a timeout either way


@pytest.fixture
def wf(broker_url: str) -> Iterator[ModuleType]:
    yield from client_app(APP, broker_url)


@pytest.fixture
def worker(start_worker: Callable[..., WorkerProcess]) -> WorkerProcess:
    return start_worker("-c", "2", "-P", "prefork", app=APP)


@pytest.fixture
def celery_client(broker_url: str) -> Iterator[celery.Celery]:
    """A real Celery 5.7 client with the same task names."""
    from tests.apps.celery_canvas import celery_url

    app = celery.Celery(
        "wf-client", broker=celery_url(broker_url), backend=celery_url(broker_url), set_as_current=False
    )
    app.conf.broker_connection_retry_on_startup = True
    yield app
    release_celery_results(app)
    app.close()


def sig(app: celery.Celery, name: str, *args: object) -> celery.Signature:
    return app.signature(f"wf.{name}", args)


def test_a_chord_frozen_by_celery_inside_a_chain_completes(
    wf: ModuleType, worker: WorkerProcess, celery_client: celery.Celery
) -> None:
    """Celery 5.7 sends the frozen chord's header as a ``celery.group`` dict, not a list."""
    flow = celery.chain(
        sig(celery_client, "add", 1, 1),
        celery.chord([sig(celery_client, "add", 1), sig(celery_client, "add", 2)], sig(celery_client, "tsum")),
        sig(celery_client, "add", 10),
    )
    assert flow.apply_async().get(timeout=WAIT) == (2 + 1) + (2 + 2) + 10
    assert "WorkerLostError" not in worker.log() and "Traceback" not in worker.log()


def test_a_group_of_chains_started_from_a_callback(wf: ModuleType, worker: WorkerProcess) -> None:
    """The group is the chain's last step, so a worker starts it (with ``chain=``) after ``add``."""
    result = (
        wf.app.signature("wf.add", (1, 1))
        | group(wf.app.signature("wf.add", (1,)) | wf.app.signature("wf.add", (2,)), wf.app.signature("wf.add", (10,)))
    ).apply_async()
    assert result.get(timeout=WAIT) == [2 + 1 + 2, 2 + 10]
    assert "multiple values" not in worker.log()


def test_a_group_in_the_middle_of_a_chain_becomes_a_chord(wf: ModuleType, worker: WorkerProcess) -> None:
    s = wf.app.signature
    result = chain(
        s("wf.add", (1, 1)), group(s("wf.add", (1,)), s("wf.add", (2,))), s("wf.tsum"), s("wf.add", (100,))
    ).apply_async()
    assert result.get(timeout=WAIT) == (3 + 4) + 100


def test_chains_of_chords_and_chords_of_chains(wf: ModuleType, worker: WorkerProcess) -> None:
    s = wf.app.signature
    chords = chain(
        chord([s("wf.add", (1, 1)), s("wf.add", (2, 2))], s("wf.tsum")),
        chord([s("wf.add", (1,)), s("wf.add", (2,))], s("wf.tsum")),
    )
    assert chords.apply_async().get(timeout=WAIT) == (6 + 1) + (6 + 2)
    of_chains = chord(
        [s("wf.add", (1, 1)) | s("wf.add", (1,)), group(s("wf.add", (5, 5)), s("wf.add", (6, 6)))], s("wf.tsum")
    )
    assert of_chains.apply_async().get(timeout=WAIT) == 3 + 10 + 12


def test_a_failed_header_fails_the_chords_after_it(wf: ModuleType, worker: WorkerProcess) -> None:
    s = wf.app.signature
    inner = chain(
        chord([s("wf.add", (1, 1)), s("wf.boom")], s("wf.tsum")),
        chord([s("wf.add", (1,)), s("wf.add", (2,))], s("wf.tsum")),
    )
    result = group(inner, s("wf.add", (1, 1))).apply_async()
    with pytest.raises((ChordError, ValueError)):
        result.get(timeout=WAIT)
    assert result.results[0].state == "FAILURE" and result.results[1].get(timeout=WAIT) == 2


def test_replace_keeps_the_chain_and_the_task_id(wf: ModuleType, worker: WorkerProcess) -> None:
    s = wf.app.signature
    result = chain(s("wf.add", (1, 1)), s("wf.replace_with_add"), s("wf.add", (1000,))).apply_async()
    assert result.get(timeout=WAIT) == 2 + 100 + 1000
    replaced = result.parent
    assert replaced.get(timeout=WAIT) == 102  # the replacement stored its result under the old id


def test_replace_with_a_group_and_with_an_empty_chain(wf: ModuleType, worker: WorkerProcess) -> None:
    s = wf.app.signature
    assert chain(s("wf.replace_with_group", (5,)), s("wf.tsum")).apply_async().get(timeout=WAIT) == 6 + 7
    empty = s("wf.replace_with_empty_chain", (1,)).apply_async()
    with pytest.raises(Exception, match="empty chain"):
        empty.get(timeout=WAIT)


def test_replace_inside_a_chord_header(wf: ModuleType, worker: WorkerProcess) -> None:
    s = wf.app.signature
    result = chord([s("wf.replace_with_add", (1,)), s("wf.add", (2, 2))], s("wf.tsum")).apply_async()
    assert result.get(timeout=WAIT) == 101 + 4


def test_add_to_chord_makes_the_body_wait_for_the_new_member(wf: ModuleType, worker: WorkerProcess) -> None:
    s = wf.app.signature
    result = chord([s("wf.add_one_more", (1,)), s("wf.add", (2, 2))], s("wf.tsum")).apply_async()
    assert result.get(timeout=WAIT) == 1 + 4 + 100


def test_a_requeued_reject_is_seen_as_redelivered(wf: ModuleType, worker: WorkerProcess) -> None:
    """``Reject(requeue=True)`` on the first delivery; the second one says ``redelivered``."""
    result = wf.app.signature("wf.reject_once").apply_async()
    assert result.get(timeout=WAIT) == "redelivered"
    assert worker.log().count("wf.reject_once[") <= 6  # received, rejected, received, succeeded


def test_our_client_sends_real_datetimes_to_a_celery_worker(
    wf: ModuleType, broker_url: str, celery_processes: Callable[..., CeleryWorkerProcess]
) -> None:
    celery_processes("tests.apps.celery_workflows", "celery", "cel", {"TQCTL_BROKER": broker_url})
    s = wf.app.signature
    assert (
        s("wf.kind", (dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),)).apply_async().get(timeout=WAIT) == "datetime"
    )
    assert s("wf.kind", (b"raw",)).apply_async().get(timeout=WAIT) == "bytes"


def test_a_celery_client_sends_real_datetimes_to_our_worker(
    wf: ModuleType, worker: WorkerProcess, celery_client: celery.Celery
) -> None:
    when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert sig(celery_client, "kind", when).apply_async().get(timeout=WAIT) == "datetime"


def test_a_celery_chord_body_that_is_a_chain_led_by_a_task(
    wf: ModuleType, worker: WorkerProcess, celery_client: celery.Celery
) -> None:
    """Only the chain's first step rides in the chord; the chain's own id stays on its last step."""

    def s(name: str, *args: object) -> celery.Signature:
        return sig(celery_client, name, *args)

    inner = celery.chain(s("tsum"), celery.group(s("add", 8), s("add", 16)), s("tsum") | s("add", 32))
    flow = celery.chord([s("add", 0, 1)], celery.chord([s("tsum"), s("tsum")], inner))
    assert flow.apply_async().get(timeout=WAIT) == 60


def test_errbacks_with_their_own_args_old_and_new_style(wf: ModuleType, worker: WorkerProcess, ledger: Path) -> None:
    """``(request, exc, tb, label)`` runs in the worker; ``(task_id, label)`` is sent the task's id."""
    s = wf.app.signature
    failing = s("wf.boom", (1,))
    failing.link_error(s("wf.errback_new", ("n1",)))
    failing.link_error(s("wf.errback_old", ("o1",)))
    result = failing.apply_async()
    with pytest.raises(ValueError):
        result.get(timeout=WAIT)
    sentinel = s("wf.add", (1, 1)).apply_async()  # errbacks are sent before the failure is final
    assert sentinel.get(timeout=WAIT) == 2
    wait_for(lambda: len(ledger.read_text().splitlines()) >= 2, WAIT, "both errbacks")
    assert sorted(ledger.read_text().split("\n")[:2]) == [f"new n1 {result.id} ValueError", f"old o1 {result.id}"]
    assert "WorkerLostError" not in worker.log()
