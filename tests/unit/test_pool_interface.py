"""Every pool speaks ``Pool``: the worker and its consumer call the prefork-only hooks (lease,
cancel, batch) on any pool, and a pool without the feature does nothing for them."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from engine.worker.deadline import Deadline
from engine.worker.pool import Pool, SoloPool, ThreadPool
from engine.worker.worker import POOLS


class Host:
    """Just enough of a ``PoolHost`` for a pool that is never started."""

    app: Any = None
    hostname = "test@host"


@pytest.mark.parametrize("kind", sorted(POOLS))
def test_every_pool_the_worker_can_start_is_a_pool(kind: str) -> None:
    assert issubclass(POOLS[kind], Pool)
    assert POOLS[kind].kind == kind


@pytest.mark.parametrize("pool_class", [SoloPool, ThreadPool])
def test_a_pool_without_the_hooks_takes_them_as_no_ops(pool_class: type[Pool]) -> None:
    pool: Any = pool_class(Host(), 1)  # type: ignore[call-arg]
    pool.lease(3, 123.0)
    pool.cancel(["a", "b"])
    with pool.batch():
        pool.submit("job")
        assert pool.terminate(Deadline(1.0)) == ["job"], "a job submitted inside a batch is taken at once"
    assert pool.shared is None


def test_a_pool_missing_a_required_method_cannot_be_made() -> None:
    class Half(Pool):
        kind = "half"

        def run_main(self, stopping: threading.Event) -> None:
            stopping.wait()

    with pytest.raises(TypeError):
        Half()  # type: ignore[abstract]


def test_a_deadline_is_shared_by_the_waits_that_use_it(caplog: pytest.LogCaptureFixture) -> None:
    """A wait that runs out leaves nothing for the next one, and each is named in the log."""
    deadline = Deadline(0.0, "cold stop")
    stuck = threading.Event()
    threads = [threading.Thread(target=stuck.wait, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        assert deadline.remaining() == 0.0 and deadline.remaining(at_least=0.01) == 0.01
        assert not deadline.join(threads[0], "the first thread")
        assert not deadline.join(threads[1], "the second thread")
        assert deadline.cut == ["the first thread", "the second thread"]
        assert "cold stop: the second thread did not end within 0.0s; going on without it" in caplog.text
    finally:
        stuck.set()
        for thread in threads:
            thread.join()
    assert deadline.join(threads[0], "the first thread"), "a thread that ended is never cut short"
