"""Item 10 of issue 13 (part): a worker's revoked ids are bounded by size and age, like the broker's
3-hour revoke store (before, ``Worker.revoked`` was a plain set that grew for the worker's whole life)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine import App
from engine.worker.revoked import MAX_REVOKED
from engine.worker.worker import Worker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def worker(redis_url: str) -> Iterator[Worker]:
    app = App("revoked-test", broker=redis_url, backend=redis_url)
    node = Worker(app, concurrency=1, pool="threads")
    yield node
    node.pool.stop(5.0)  # the thread pool's time-limit thread starts with the pool, before run()
    app.close()


def test_worker_revoked_is_bounded_by_size(worker: Worker) -> None:
    worker.revoked.update(f"id-{n}" for n in range(MAX_REVOKED + 10_000))
    assert len(worker.revoked) == MAX_REVOKED
    assert "id-0" not in worker.revoked and f"id-{MAX_REVOKED + 9_999}" in worker.revoked
    worker.revoked.add("new")
    assert "new" in worker.revoked and len(worker.revoked) == MAX_REVOKED


def test_worker_revoked_forgets_after_three_hours(worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(worker.revoked, "_clock", clock)
    worker.revoked.add("old")
    clock.now += 2 * 3600
    worker.revoked.update(["newer", "old"])  # a reload from the broker does not make "old" young again
    assert "old" in worker.revoked and "newer" in worker.revoked
    clock.now += 3600 + 1
    assert "old" not in worker.revoked and "newer" in worker.revoked
    assert sorted(worker.revoked) == ["newer"]
    worker.revoked.add("newer")  # revoked again: a full three hours from now
    clock.now += 3 * 3600 - 1
    assert "newer" in worker.revoked
