"""Every pool speaks ``Pool``: the worker and its consumer call the prefork-only hooks (lease,
cancel, batch) on any pool, and a pool without the feature does nothing for them."""

from __future__ import annotations

import threading
from typing import Any

import pytest

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
        assert pool.terminate() == ["job"], "a job submitted inside a batch is taken at once"
    assert pool.shared is None


def test_a_pool_missing_a_required_method_cannot_be_made() -> None:
    class Half(Pool):
        kind = "half"

        def run_main(self, stopping: threading.Event) -> None:
            stopping.wait()

    with pytest.raises(TypeError):
        Half()  # type: ignore[abstract]
