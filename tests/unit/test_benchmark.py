"""The benchmark's arithmetic and /proc parsing (no timing asserts: figures are never checked)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tqctl import benchmark
from tqctl import benchmark_sys as sysinfo

SMAPS_ROLLUP = """\
55d0c8a4e000-7ffd3b5f2000 ---p 00000000 00:00 0                          [rollup]
Rss:               71264 kB
Pss:               38917 kB
Pss_Dirty:         30140 kB
Pss_Anon:          30128 kB
Pss_File:           8789 kB
Pss_Shmem:             0 kB
Shared_Clean:      24908 kB
Shared_Dirty:      14640 kB
Private_Clean:      1596 kB
Private_Dirty:     30120 kB
Referenced:        71264 kB
Anonymous:         44768 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
"""


@pytest.mark.parametrize(("pct", "expected"), [(0, 1.0), (50, 2.5), (90, 3.7), (99, 3.97), (100, 4.0)])
def test_percentile_interpolates_between_ranks(pct: float, expected: float) -> None:
    assert sysinfo.percentile([4.0, 1.0, 3.0, 2.0], pct) == pytest.approx(expected)


def test_percentile_edge_cases() -> None:
    assert sysinfo.percentile([], 50) is None
    assert sysinfo.percentile([7.0], 99) == 7.0
    values = list(range(1, 101))
    assert sysinfo.percentile(values, 50) == pytest.approx(50.5)
    assert sysinfo.percentile(values, 99) == pytest.approx(99.01)
    with pytest.raises(ValueError):
        sysinfo.percentile([1.0], 101)


def test_median_skips_unmeasured_values() -> None:
    assert sysinfo.median([3.0, 1.0, 2.0]) == 2.0
    assert sysinfo.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert sysinfo.median([None, 5.0, None]) == 5.0
    assert sysinfo.median([None, None]) is None
    assert sysinfo.median([]) is None


def test_summarize_takes_medians_sums_counters_and_ands_flags() -> None:
    runs = [
        {
            "drain_per_s": 900.0,
            "drain_sent": 100,
            "drain_completed": 100,
            "latency_p50_ms": None,
            "complete": True,
            "broker_cpu_source": "proc",
            "worker_process_count": 3,
        },
        {
            "drain_per_s": 1100.0,
            "drain_sent": 100,
            "drain_completed": 99,
            "latency_p50_ms": 2.0,
            "complete": False,
            "broker_cpu_source": "proc",
            "worker_process_count": 3,
        },
        {
            "drain_per_s": 1000.0,
            "drain_sent": 100,
            "drain_completed": 100,
            "latency_p50_ms": 4.0,
            "complete": True,
            "broker_cpu_source": "proc",
            "worker_process_count": 3,
        },
    ]
    out = sysinfo.summarize(runs)
    assert out["drain_per_s"] == 1000.0
    assert out["latency_p50_ms"] == 3.0
    assert (out["drain_sent"], out["drain_completed"]) == (300, 299)
    assert out["complete"] is False
    assert out["broker_cpu_source"] == "proc"
    assert out["worker_process_count"] == 3
    assert sysinfo.summarize([]) == {}


def test_parse_smaps_rollup_reads_kb_fields() -> None:
    parsed = sysinfo.parse_smaps_rollup(SMAPS_ROLLUP)
    assert parsed["rss"] == 71264
    assert parsed["pss"] == 38917
    assert parsed["private_dirty"] == 30120
    assert "55d0c8a4e000-7ffd3b5f2000 ---p 00000000 00" not in parsed  # the header line is skipped
    assert sysinfo.parse_smaps_rollup("") == {}


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="needs Linux /proc")
def test_process_tree_memory_and_cpu_of_a_real_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 5
        while child.pid not in sysinfo.process_tree([os.getpid()]) and time.monotonic() < deadline:
            time.sleep(0.02)
        tree = sysinfo.process_tree([os.getpid()])
        assert tree[0] == os.getpid() and child.pid in tree
        rss, pss = sysinfo.tree_memory_mb(tree)
        assert rss is not None and pss is not None and 0 < pss <= rss
        assert sysinfo.cpu_seconds(os.getpid()) is not None
        assert sysinfo.tree_cpu_seconds(tree) >= 0
    finally:
        child.kill()
        child.wait()
    assert sysinfo.process_tree([child.pid]) == []  # a reaped process is gone, not an error
    assert sysinfo.cpu_seconds(child.pid) is None
    assert sysinfo.tree_memory_mb([child.pid]) == (None, None)


def test_self_cpu_and_machine() -> None:
    assert sysinfo.self_cpu_seconds() > 0
    info = sysinfo.machine()
    assert set(info) == {"cpu_model", "cores", "python", "system"}


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("redis://127.0.0.1:6379/0", True),
        ("redis://localhost/0", True),
        ("redis+socket:///tmp/x/redis.sock", True),
        ("redis://cache.internal:6379/0", False),
    ],
)
def test_is_local(url: str, local: bool) -> None:
    assert sysinfo.is_local(url) is local


def test_rows_cover_every_figure_with_stable_keys() -> None:
    result = {key: 1.0 for key, _, _ in benchmark.FIGURES}
    rows = benchmark.rows(result)
    assert [r["key"] for r in rows] == [key for key, _, _ in benchmark.FIGURES]
    assert all(r["key"].islower() and " " not in r["key"] for r in rows)


def test_compare_ratio_is_oriented_so_above_one_means_tqctl_is_better() -> None:
    from tests.bench import compare

    assert compare.ratio("drain_per_s", 800.0, 2400.0) == pytest.approx(3.0)
    assert compare.ratio("latency_p50_ms", 2.0, 0.5) == pytest.approx(4.0)
    assert compare.ratio("worker_pss_mb", 80.0, 40.0) == pytest.approx(2.0)
    assert compare.ratio("enqueue_pipelined_per_s", None, 10.0) is None


# -- the bulk and id fast paths the benchmark measures -------------------------------------------
def test_new_id_is_a_version_4_uuid() -> None:
    import uuid

    from engine.protocol import task as protocol

    ids = {protocol.new_id() for _ in range(2000)}
    assert len(ids) == 2000
    for value in list(ids)[:200]:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and str(parsed) == value


def test_build_many_makes_what_build_makes() -> None:
    import datetime as dt
    import json

    from engine.protocol import task as protocol

    calls = [((1, 'é"x'), {"k": [1, 2]}), ((1, 'é"x'), {"k": [1, 2]}), ((), None), (["a"], {})]
    opts = {
        "queue": "q",
        "ignore_result": True,
        "priority": 3,
        "parent_id": "P",
        "group": "G",
        "expires": dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=60),
    }
    built = protocol.build_many("t.name", calls, **opts)
    assert len({tid for tid, _ in built}) == len(calls)
    for (tid, raw), (args, kwargs) in zip(built, calls, strict=True):
        _, ref = protocol.build("t.name", args, kwargs, task_id=tid, **opts)
        ours, theirs = json.loads(raw), json.loads(ref)
        for env in (ours, theirs):  # per-message by nature
            env["properties"].pop("delivery_tag"), env["headers"].pop("sent_at"), env["properties"].pop("expiration")
        assert ours == theirs
        message = protocol.decode(raw, frozenset({"application/json"}))
        assert (message.id, message.root_id, message.args, message.kwargs) == (tid, tid, list(args), dict(kwargs or {}))
    fixed_root = protocol.build_many("t.name", [((), None)], root_id="R")
    assert json.loads(fixed_root[0][1])["headers"]["root_id"] == "R"
    with pytest.raises(ValueError):
        protocol.build_many("t.name", [((), None)], task_id="x")
