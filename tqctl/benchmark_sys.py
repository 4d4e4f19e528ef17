"""What ``tqctl bench`` reads besides the broker: statistics, /proc and the broker's own CPU clock.

Pure helpers, no engine imports: percentiles and medians, process trees, RSS/PSS from
``/proc/<pid>/smaps_rollup`` and CPU seconds from ``/proc/<pid>/stat`` (Linux). Everything that
cannot be read (another OS, a process that exited) reads as absent, never as an error.
"""

from __future__ import annotations

import math
import os
import resource
import statistics
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
LOOPBACK = ("127.0.0.1", "localhost", "::1", "")
SERVER_NAMES = ("redis", "valkey", "keydb", "dragonfly")


# -- statistics -------------------------------------------------------------------------------
def percentile(values: Sequence[float], pct: float) -> float | None:
    """The ``pct``-th percentile with linear interpolation between ranks (numpy's default)."""
    if not values:
        return None
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be within 0..100, not {pct}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Iterable[float | None]) -> float | None:
    """Median of the values that were measured (``None`` = not measured), or ``None``."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The runs' medians for figures; ``*_sent``/``*_completed``/``*_started`` summed, flags all-true,
    anything else (labels) kept from the first run."""
    if not runs:
        return {}
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        values = [run.get(key) for run in runs]
        if key.endswith(("_sent", "_completed", "_started")):
            out[key] = sum(v or 0 for v in values)
        elif isinstance(first, bool):
            out[key] = all(values)
        elif not isinstance(first, (int, float, type(None))):
            out[key] = first
        else:
            out[key] = median(values)
    return out


# -- processes --------------------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` fields after the command name (which may contain spaces)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return kids
    for name in entries:
        if name.isdigit() and (fields := _stat_fields(int(name))) is not None:
            kids.setdefault(int(fields[1]), []).append(int(name))
    return kids


def process_tree(roots: Iterable[int]) -> list[int]:
    """The roots and all their descendants that are alive now."""
    kids = children_map()
    found: list[int] = []
    todo = [r for r in roots if _stat_fields(r) is not None]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.append(pid)
            todo.extend(kids.get(pid, ()))
    return found


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of one live process (all its threads)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14 and 15


def tree_cpu_seconds(pids: Iterable[int]) -> float:
    return sum(cpu_seconds(pid) or 0.0 for pid in pids)


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def parse_smaps_rollup(text: str) -> dict[str, int]:
    """``{"rss": kB, "pss": kB, ...}`` from a ``smaps_rollup`` text (keys lowercased)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[key.strip().lower()] = int(parts[0])
    return out


def memory_kb(pid: int) -> dict[str, int] | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            return parse_smaps_rollup(fh.read())
    except OSError:
        return None


def tree_memory_mb(pids: Iterable[int]) -> tuple[float | None, float | None]:
    """(RSS, PSS) of a set of processes in MB; PSS splits shared pages, so it sums honestly."""
    readings = [m for pid in pids if (m := memory_kb(pid)) is not None]
    if not readings:
        return None, None
    return (sum(m.get("rss", 0) for m in readings) / 1024, sum(m.get("pss", 0) for m in readings) / 1024)


# -- the broker's CPU -------------------------------------------------------------------------
def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme.endswith("socket") or parts.scheme == "unix" or (parts.hostname or "") in LOOPBACK


def looks_like_server(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            comm = fh.read().strip().lower()
    except OSError:
        return False
    return any(name in comm for name in SERVER_NAMES)


class BrokerClock:
    """The broker server's CPU seconds: ``/proc/<pid>/stat`` when it runs here, else ``INFO cpu``."""

    def __init__(self, client: Any, url: str, pid: int | None = None) -> None:
        self.client = client
        self.pid = pid
        if self.pid is None and is_local(url):
            try:
                found = int(client.info("server").get("process_id") or 0)
            except Exception:  # a server without INFO: fall through to "unknown"
                found = 0
            self.pid = found if found and looks_like_server(found) else None
        self.source = "proc" if self.pid is not None else "info"

    def read(self) -> float | None:
        if self.pid is not None:
            return cpu_seconds(self.pid)
        try:
            info = self.client.info("cpu")
            return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        except Exception:  # no INFO cpu (some managed servers): broker CPU is not measured
            self.source = "none"
            return None


class TreeClock:
    """A broker's CPU seconds from ``/proc``: the process ``pid`` and all its descendants (a
    RabbitMQ node is a start script, ``beam.smp`` and its port programs); None without a pid."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.source = "proc" if pid is not None else "none"

    def read(self) -> float | None:
        if self.pid is None:
            return None
        pids = process_tree([self.pid])
        return tree_cpu_seconds(pids) if pids else None


def machine() -> dict[str, Any]:
    """CPU model, core count and Python version, for the README's table."""
    import platform

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }
