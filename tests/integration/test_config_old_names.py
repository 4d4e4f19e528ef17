"""A Celery 3 setting name given to ``app.conf.update`` in the worker's app module takes effect on a
real worker on Redis, as it does under Celery 5.7."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from tests.integration.harness import ROOT, WorkerProcess, wait_for

pytestmark = pytest.mark.integration

OLD_NAMES_APP = """\
from tests.apps.shop import *  # noqa: F403 - the shop's tasks
from tests.apps.shop import app

app.conf.update(CELERYD_MAX_TASKS_PER_CHILD=2)
"""


def test_an_old_max_tasks_per_child_given_to_update_recycles_children(
    shop: ModuleType, start_worker: Callable[..., WorkerProcess], ledger: Path, tmp_path: Path
) -> None:
    """Before: kept as ``celeryd_max_tasks_per_child``, no setting: the worker warned it was
    misspelt and its one child ran all six tasks. Now each child runs two and is replaced."""
    (tmp_path / "old_names_shop.py").write_text(OLD_NAMES_APP)
    path = os.pathsep.join([str(ROOT), str(tmp_path)])
    worker = start_worker("-c", "1", app="old_names_shop", env={"PYTHONPATH": path})
    results = [shop.record.delay(f"old{i}") for i in range(6)]
    assert [r.get(timeout=60) for r in results] == [f"old{i}" for i in range(6)]
    ran = [line.split() for line in ledger.read_text().splitlines() if line.startswith("old")]
    assert sorted(task_id for _, task_id, *_ in ran) == sorted(r.id for r in results)  # each ran once
    assert sorted(Counter(pid for _, _, pid, *_ in ran).values()) == [2, 2, 2]  # three children, two each
    replies: dict[str, dict[str, object]] = {}

    def answered() -> bool:
        replies.update(shop.app.control.inspect(timeout=2).stats() or {})
        return bool(replies)

    wait_for(answered, 30, "an inspect stats reply")
    [stats] = replies.values()
    assert stats["pool"]["max-tasks-per-child"] == 2  # type: ignore[index]
    assert "not a Celery setting" not in worker.log()
