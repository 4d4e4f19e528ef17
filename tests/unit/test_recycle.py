"""Child recycling's settings and count (``engine.worker.recycle``); the pools' side runs on real
workers in tests/integration/test_recycle.py."""

from __future__ import annotations

from typing import Any

import pytest

from engine.config import Settings
from engine.exceptions import ImproperlyConfigured
from engine.worker.recycle import RecycleLimits, Recycler, resident_kib


class OldConfig:
    """A Celery 3 config module's spelling."""

    CELERYD_MAX_TASKS_PER_CHILD = 5
    CELERYD_MAX_MEMORY_PER_CHILD = 200_000


def test_limits_are_read_from_the_settings_and_their_old_names() -> None:
    """Before: both settings were ignored (a startup warning said so). Now they are the limits."""
    assert not RecycleLimits.of(Settings())
    assert RecycleLimits.of(Settings(worker_max_tasks_per_child=3)) == RecycleLimits(3, None)
    conf = Settings()
    conf.from_object(OldConfig)
    assert RecycleLimits.of(conf) == RecycleLimits(5, 200_000)
    assert RecycleLimits.of(Settings(worker_max_memory_per_child=0)) == RecycleLimits()  # Celery: 0 is off
    assert Settings(worker_max_tasks_per_child=3, worker_max_memory_per_child=1).startup_warnings() == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("worker_max_tasks_per_child", 0),
        ("worker_max_tasks_per_child", -1),
        ("worker_max_tasks_per_child", "many"),
        ("worker_max_tasks_per_child", 2.5),
        ("worker_max_tasks_per_child", True),
        ("worker_max_memory_per_child", -200),
        ("worker_max_memory_per_child", "200MB"),
    ],
)
def test_a_bad_limit_stops_the_worker_at_start_in_one_line(name: str, value: Any) -> None:
    """A leak guard that silently does nothing is how a host runs out of memory."""
    with pytest.raises(ImproperlyConfigured, match=f"^{name} must be a whole number above 0, not "):
        RecycleLimits.of(Settings(**{name: value}))


def test_the_task_that_reaches_the_count_is_the_last() -> None:
    recycler = Recycler(RecycleLimits(max_tasks=3))
    assert [recycler.after_task() for _ in range(3)] == [False, False, True]
    assert not any(Recycler(RecycleLimits()).after_task() for _ in range(100))  # no limit: never


def test_a_child_above_the_memory_limit_goes_after_the_task() -> None:
    here = resident_kib()
    assert here > 1000  # a Python process: megabytes, read in KiB
    assert Recycler(RecycleLimits(max_memory_kib=here // 2)).after_task()
    assert not Recycler(RecycleLimits(max_memory_kib=here * 10)).after_task()
