"""The basic path a user sees first: send a task, a real worker runs it, the result reads back."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_task_runs_on_each_pool(shop, start_worker, pool: str) -> None:
    start_worker("-P", pool, "-c", "2")
    result = shop.add.delay(2, 3)
    assert result.get(timeout=10) == 5
    assert result.successful() and result.state == "SUCCESS"


def test_failure_reads_back_with_type_and_traceback(shop, start_worker) -> None:
    start_worker("-c", "1")
    result = shop.fail.delay("card declined")
    with pytest.raises(ValueError, match="card declined"):
        result.get(timeout=10)
    assert result.failed()
    assert "ValueError: card declined" in result.traceback
