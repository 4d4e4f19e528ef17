"""Child recycling (``worker_max_tasks_per_child``, ``worker_max_memory_per_child``): when a
prefork child has run its share of tasks, or its resident memory grew past the limit, it exits
after the task that crossed the line (settled first) and the parent forks a fresh one.

Leaky tasks (a C extension's cache, a module-level list) are why Celery deploy scripts carry
these flags: a replacement starts from the parent's clean memory. The decision is the child's
own, taken after each task, as Celery's pool children take it; the parent only tells a
recycled child's exit from a crash (the child says so first) and keeps the pool's size.
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.exceptions import ImproperlyConfigured
from engine.worker.observers import Observer

if TYPE_CHECKING:
    from engine.trace import Outcome
    from engine.worker.job import Job

log = logging.getLogger("engine.worker")
RECYCLE = "recycle"  # a child's report: it exits after the task it just reported, on purpose


def _setting(conf: Any, name: str, zero_is_off: bool) -> int | None:
    """A positive whole number, or None (off). A bad value stops the worker at start: a leak
    guard that silently does nothing is how a host runs out of memory."""
    value = conf.get(name)
    if value is None or (zero_is_off and value == 0):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImproperlyConfigured(f"{name} must be a whole number above 0, not {value!r}")
    return value


@dataclass(frozen=True)
class RecycleLimits:
    """The two limits; None is no limit."""

    max_tasks: int | None = None
    max_memory_kib: int | None = None

    @classmethod
    def of(cls, conf: Any) -> RecycleLimits:
        """Celery treats a memory limit of 0 as none; a task limit of 0 is refused (its pool does too)."""
        return cls(
            _setting(conf, "worker_max_tasks_per_child", zero_is_off=False),
            _setting(conf, "worker_max_memory_per_child", zero_is_off=True),
        )

    def __bool__(self) -> bool:
        return bool(self.max_tasks or self.max_memory_kib)


def resident_kib() -> int:
    """This process's resident memory now, in KiB: what a leak grows. The peak (``ru_maxrss``) is
    the fallback where /proc is missing."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


class Recycler:
    """Counts a child's tasks; ``after_task`` says whether the child should go now."""

    def __init__(self, limits: RecycleLimits) -> None:
        self.limits = limits
        self.active = bool(limits)  # read after every task of every child: one attribute, no call
        self.ran = 0

    def after_task(self) -> bool:
        if not self.active:
            return False
        limits = self.limits
        self.ran += 1
        if limits.max_tasks and self.ran >= limits.max_tasks:
            log.info("child %d recycled after %d task(s) (max tasks per child)", os.getpid(), self.ran)
            return True
        if limits.max_memory_kib:
            used = resident_kib()
            if used > limits.max_memory_kib:
                log.warning(
                    "child %d recycled: resident memory %d KiB is above the limit of %d KiB (max memory per child)",
                    os.getpid(),
                    used,
                    limits.max_memory_kib,
                )
                return True
        return False


class RecycleObserver(Observer):
    """A work-sharing child's count: its tasks run on its own worker, so the check rides on the
    ``finished`` hook, which comes before the worker takes its next task (``top_up``)."""

    def __init__(self, recycler: Recycler, retire: Callable[[], None]) -> None:
        self.recycler = recycler
        self.retire = retire

    def finished(self, job: Job, outcome: Outcome) -> None:
        if self.recycler.after_task():
            self.retire()
