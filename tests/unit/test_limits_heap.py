"""The thread limiter lets go of a run's deadlines when the run ends.

Before: ``disarm`` only forgot the run, and its deadlines stayed in the timer heap until they
fell, so with ``time_limit=3600`` a threads (or asyncio plain-def) worker held one entry per task
of the last hour (600,000 after 600,000 arm/disarm pairs; millions at 1,000 tasks/s). Now ended
runs' entries are dropped by a compaction once they are most of the heap: the heap stays near
the runs in flight, and arm+disarm stays at ~2 us.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from engine.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from engine.worker.limits import COMPACT_FROM, ThreadLimiter

RUNS = 20_000


@pytest.fixture
def limiter() -> Iterator[ThreadLimiter]:
    lim = ThreadLimiter()
    try:
        yield lim
    finally:
        lim.stop()


def test_disarmed_runs_leave_no_deadlines_behind(limiter: ThreadLimiter) -> None:
    for i in range(RUNS):
        limiter.arm(3000.0, 3600.0, "t.short", str(i))
        limiter.disarm()
    assert limiter.pending() <= COMPACT_FROM


def test_rearming_without_disarm_releases_the_previous_run(limiter: ThreadLimiter) -> None:
    for i in range(RUNS):
        limiter.arm(None, 3600.0, "t.short", str(i))
    assert limiter.pending() <= COMPACT_FROM
    limiter.disarm()


def test_runs_in_flight_on_other_threads_keep_their_deadlines(limiter: ThreadLimiter) -> None:
    armed, release = threading.Barrier(5), threading.Event()

    def long_run() -> None:
        limiter.arm(3000.0, 3600.0, "t.long", "long")
        armed.wait()
        release.wait()
        limiter.disarm()

    threads = [threading.Thread(target=long_run) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        armed.wait()
        for i in range(RUNS):
            limiter.arm(None, 3600.0, "t.short", str(i))
            limiter.disarm()
        assert 8 <= limiter.pending() <= COMPACT_FROM + 8
    finally:
        release.set()
        for thread in threads:
            thread.join()


@pytest.mark.parametrize("soft, hard, expected", [(0.05, None, SoftTimeLimitExceeded), (None, 0.05, TimeLimitExceeded)])
def test_a_limit_still_fires_after_many_disarmed_runs(
    limiter: ThreadLimiter, soft: float | None, hard: float | None, expected: type[BaseException]
) -> None:
    got: list[BaseException] = []

    def overrun() -> None:
        for i in range(RUNS):
            limiter.arm(3000.0, 3600.0, "t.short", str(i))
            limiter.disarm()
        limiter.arm(soft, hard, "t.late", "late")
        try:
            while True:  # until the limit is raised in this thread
                time.sleep(0.01)
        except BaseException as exc:
            got.append(exc)
        finally:
            limiter.disarm()

    thread = threading.Thread(target=overrun, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    assert len(got) == 1 and isinstance(got[0], expected)
