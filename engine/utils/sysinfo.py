"""How many CPUs a worker may use: the affinity mask, capped by a cgroup CPU quota (containers).

``cpu_budget().count`` is what ``worker_concurrency='auto'`` means in Celery 5.7: a container
limited to 1.5 CPUs on a 16-core host gets 2 processes, not 16.
"""

from __future__ import annotations

import math
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_SELF_CGROUP = "/proc/self/cgroup"
AUTO_CONCURRENCY = "auto"

QuotaReader = Callable[[str], "tuple[str, str] | None"]


@dataclass(frozen=True)
class CpuBudget:
    count: int  # the concurrency to use
    available: int  # CPUs this process may run on (affinity)
    quota: float | None  # the cgroup quota in CPUs; None when none applies or it was not read


def is_auto_concurrency(value: object) -> bool:
    return isinstance(value, str) and value.strip().lower() == AUTO_CONCURRENCY


def available_cpu_count() -> int:
    """CPUs in this process's affinity mask (taskset, cpusets), else the machine's, else 2."""
    count: int | None = None
    if hasattr(os, "process_cpu_count"):
        count = os.process_cpu_count()
    elif hasattr(os, "sched_getaffinity"):
        try:
            count = len(os.sched_getaffinity(0))
        except OSError:
            count = None
    return count or os.cpu_count() or 2


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def _cpus(quota_us: str, period_us: str) -> float | None:
    """``quota / period``; v2's ``max`` and v1's ``-1`` mean no limit."""
    try:
        quota, period = int(quota_us), int(period_us)
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v2(directory: str) -> tuple[str, str] | None:
    fields = (_read(posixpath.join(directory, "cpu.max")) or "").split()
    return (fields[0], fields[1]) if len(fields) == 2 else None


def _v1(directory: str) -> tuple[str, str] | None:
    quota = _read(posixpath.join(directory, "cpu.cfs_quota_us"))
    period = _read(posixpath.join(directory, "cpu.cfs_period_us"))
    return None if quota is None or period is None else (quota.strip(), period.strip())


def _lowest(base: str, path: str, read: QuotaReader) -> float | None:
    """The smallest quota on ``path`` or any of its ancestors: a parent's limit binds its children."""
    path = posixpath.normpath("/" + path.lstrip("/"))
    found = []
    while True:
        raw = read(posixpath.join(base, path.lstrip("/")))
        cpus = _cpus(*raw) if raw else None
        if cpus is not None:
            found.append(cpus)
        if path == "/":
            return min(found) if found else None
        path = posixpath.dirname(path)


def _own_cgroups(content: str | None) -> tuple[str | None, str | None, str]:
    """``(v2 path, v1 cpu path, v1 mount name)`` from ``/proc/self/cgroup``."""
    v2 = v1 = None
    mount = "cpu"
    for line in (content or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and not controllers:
            v2 = path
        elif "cpu" in controllers.split(","):
            v1, mount = path, controllers
    return v2, v1, mount


def cgroup_cpu_quota(root: str = CGROUP_ROOT, proc_cgroup: str = PROC_SELF_CGROUP) -> float | None:
    """The CFS quota (in CPUs) over this process: cgroup v2 first, then v1; None when unlimited."""
    v2, v1, mount = _own_cgroups(_read(proc_cgroup))
    if v2 is None and v1 is None:
        v2 = v1 = "/"
    if v2 is not None and (cpus := _lowest(root, v2, _v2)) is not None:
        return cpus
    if v1 is not None:
        for name in dict.fromkeys((mount, "cpu")):
            if (cpus := _lowest(posixpath.join(root, name), v1, _v1)) is not None:
                return cpus
    return None


def cpu_budget(
    use_cgroup_quota: bool = True, root: str = CGROUP_ROOT, proc_cgroup: str = PROC_SELF_CGROUP
) -> CpuBudget:
    """The CPUs to size a CPU-bound pool by: the available count, capped to the quota rounded up
    (a fractional quota is used in full), never below 1."""
    available = available_cpu_count()
    quota = cgroup_cpu_quota(root, proc_cgroup) if use_cgroup_quota else None
    if quota is None:
        return CpuBudget(available, available, None)
    return CpuBudget(min(available, max(1, math.ceil(quota))), available, quota)
