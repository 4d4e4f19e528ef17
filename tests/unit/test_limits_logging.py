"""A time limit that falls while the task is inside a logging call still reaches the task.

Before: the limit's exception was raised inside ``Handler.emit``, which reports any exception as
"--- Logging error ---" and carries on, so it was lost: a chatty task with a soft limit (and no
hard one) ran on for good (30 of 30 runs reached their limit after the fix; 1 of 1 hung before,
in each of solo, prefork and threads). Celery 5.7's prefork worker loses it the same way.
Now the limit waits until the logging call returns. Each test's one slow log call (0.5 s, its
limit 0.05 s) is where the limit falls; the task's own work after it is where it lands now.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

from engine.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from engine.worker.limits import ThreadLimiter, alarm_limits

WORK_STEPS = 500  # the task's own work after the slow log call: 0.01 s a step, 5 s in all


class SlowStream:
    """A stream a stdlib ``StreamHandler`` writes to, slowly (a full pipe, a slow disk)."""

    def write(self, text: str) -> None:
        time.sleep(0.5)

    def flush(self) -> None:
        pass


@pytest.fixture
def chatty() -> Iterator[logging.Logger]:
    logger = logging.getLogger("tests.unit.limits.chatty")
    handler = logging.StreamHandler(SlowStream())
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger
    finally:
        logger.removeHandler(handler)


def task(logger: logging.Logger) -> int:
    """Returns the steps of its own work it did: all of them when the limit never reached it."""
    logger.warning("a slow line: the limit falls while it is written")
    for _ in range(WORK_STEPS):
        time.sleep(0.01)
    return WORK_STEPS


def test_a_soft_limit_that_falls_in_a_logging_call_reaches_the_task(chatty: logging.Logger) -> None:
    with pytest.raises(SoftTimeLimitExceeded), alarm_limits(0.05, None):
        task(chatty)


def test_a_hard_limit_on_the_main_thread_likewise(chatty: logging.Logger) -> None:
    with pytest.raises(TimeLimitExceeded), alarm_limits(None, 0.05):
        task(chatty)


@pytest.mark.parametrize("soft, hard, expected", [(0.05, None, SoftTimeLimitExceeded), (None, 0.05, TimeLimitExceeded)])
def test_a_limit_on_a_pool_thread_likewise(
    chatty: logging.Logger, soft: float | None, hard: float | None, expected: type[BaseException]
) -> None:
    limiter = ThreadLimiter()
    got: list[object] = []

    def run() -> None:
        limiter.arm(soft, hard)
        try:
            got.append(task(chatty))
        except BaseException as exc:  # the limit, raised asynchronously in this thread
            got.append(exc)
        finally:
            limiter.disarm()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    limiter.stop()
    assert len(got) == 1 and isinstance(got[0], expected), got
