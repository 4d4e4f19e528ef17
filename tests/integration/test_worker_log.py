"""Lines a real worker logs, read from its log file."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

from tests.integration.harness import WorkerProcess, wait_for

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_retry_is_logged_once_with_its_countdown_as_celery_words_it(
    shop: ModuleType, start_worker: Callable[..., WorkerProcess], pool: str
) -> None:
    """Before: besides Celery's "Task ...[id] retry: Retry in 0.1s: ValueError('attempt 0')", the
    worker logged "Task ...[id] retry in 0.0088s: ValueError('attempt 0')", whose figure is the run
    time but reads as the countdown. Now the retry is logged once, in Celery's words, with the
    countdown the task gave (0.1 s)."""
    worker = start_worker("-P", pool, "-c", "1")
    result = shop.flaky.delay(1)  # retries once with countdown=0.1, then succeeds
    assert result.get(timeout=30) == 1
    wait_for(lambda: f"[{result.id}] succeeded" in worker.log(), 15, "the re-run's log line")
    retries = [line for line in worker.log().splitlines() if f"[{result.id}] retry" in line]
    assert len(retries) == 1, retries
    assert retries[0].endswith(
        f"Task tests.apps.shop.flaky[{result.id}] retry: Retry in 0.1s: ValueError('attempt 0')"
    ), retries


def test_an_autoscaled_worker_starts_at_min_and_shows_its_range(start_worker: Callable[..., WorkerProcess]) -> None:
    """Before: "--autoscale 4,2 -c 3" started 3 processes (Celery's starts MIN, whatever -c says), and
    earlier still the ready line showed no range. Now the pool starts at 2 and the line reads
    "concurrency=2 (autoscale 2-4)": the size it started with and the range it moves in."""
    worker = start_worker("-c", "3", "--autoscale", "4,2")
    ready = next(line for line in worker.log().splitlines() if " ready: " in line)
    assert "ready: pool=prefork concurrency=2 (autoscale 2-4) queues=celery" in ready, ready
    assert len(worker.children()) == 2
