"""Throughput and memory of ClusterState with 100k tasks tracked (figures only, no asserts).

Run: ``PYTHONPATH=. python tests/bench/bench_event_state.py [n_tasks]``. The events mimic a Celery 5.7
prefork worker with ``-E``: task-received / task-started / task-succeeded per task, 2% task-failed with
a real-sized traceback, heartbeats every 2 s from four workers, decoded dicts as the receiver yields them.
"""

from __future__ import annotations

import gc
import random
import resource
import sys
import time
import tracemalloc
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

from engine.events.state import ClusterState
from engine.protocol import events as wire

NAMES = [
    "shop.orders.create",
    "shop.orders.charge",
    "shop.mail.send_receipt",
    "shop.stock.reserve",
    "shop.reports.daily",
]
WORKERS = [f"w{i}@node{i}" for i in range(1, 5)]
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/venv/lib/python3.11/site-packages/celery/app/trace.py", line 453, in trace_task\n'
    "    R = retval = fun(*args, **kwargs)\n"
    '  File "/srv/venv/lib/python3.11/site-packages/celery/app/trace.py", line 736, in __protected_call__\n'
    "    return self.run(*args, **kwargs)\n"
    '  File "/srv/app/shop/orders.py", line 88, in charge\n'
    "    raise PaymentDeclined(order_id)\n"
    "shop.errors.PaymentDeclined: order {n} declined by gateway\n"
)


def _base(kind: str, host: str, ts: float, clock: int) -> dict[str, Any]:
    return {
        "hostname": host,
        "utcoffset": 0.0,
        "pid": 4242,
        "clock": clock,
        "timestamp": ts,
        "type": kind,
        "local_received": ts + 0.001,
    }


def events(n_tasks: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """The stream as the receiver yields it: task events in ``task.multi`` batches of 24 per worker and
    heartbeats alone, each message encoded and decoded, so every string is a fresh object as in real life."""
    batches: dict[str, list[dict[str, Any]]] = {w: [] for w in WORKERS}
    for event in _plain_events(n_tasks, seed):
        host = event["hostname"]
        if event["type"] == "worker-heartbeat":
            yield from wire.decode(wire.encode(event, host)[1])
            continue
        batches[host].append(event)
        if len(batches[host]) >= 24:
            yield from wire.decode(wire.encode(batches[host], host)[1])
            batches[host] = []
    for host, batch in batches.items():
        if batch:
            yield from wire.decode(wire.encode(batch, host)[1])


def _plain_events(n_tasks: int, seed: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    t0, clock, processed = 1_795_000_000.0, 0, dict.fromkeys(WORKERS, 0)
    next_beat = t0
    for n in range(n_tasks):
        ts = t0 + n * 0.001
        host, name, uid = WORKERS[n % len(WORKERS)], NAMES[n % len(NAMES)], str(uuidlib.UUID(int=rng.getrandbits(128)))
        clock += 3
        yield (
            _base("task-received", host, ts, clock)
            | {
                "uuid": uid,
                "name": name,
                "args": f"({n}, {rng.randint(1, 10_000)})",
                "kwargs": "{'currency': 'EUR'}",
                "root_id": uid,
                "parent_id": None,
                "retries": 0,
                "eta": None,
                "expires": None,
            }
        )
        yield (_base("task-started", host, ts + 0.0002, clock + 1) | {"uuid": uid})
        if rng.random() < 0.02:
            yield (
                _base("task-failed", host, ts + 0.0005, clock + 2)
                | {
                    "uuid": uid,
                    "exception": f"PaymentDeclined('order {n} declined by gateway')",
                    "traceback": TRACEBACK.format(n=n),
                }
            )
        else:
            yield (
                _base("task-succeeded", host, ts + 0.0005, clock + 2)
                | {"uuid": uid, "result": repr({"order": n, "ok": True}), "runtime": 0.0003}
            )
        processed[host] += 1
        if ts >= next_beat:
            next_beat = ts + 2.0
            for w in WORKERS:
                yield (
                    _base("worker-heartbeat", w, ts, clock)
                    | {
                        "freq": 2.0,
                        "active": 1,
                        "processed": processed[w],
                        "loadavg": [0.5, 0.4, 0.3],
                        "sw_ident": "py-celery",
                        "sw_ver": "5.7.0",
                        "sw_sys": "Linux",
                    }
                )


def rss_mb() -> float:
    """Current resident set size (Linux /proc), falling back to the peak from getrusage."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_memory(n_tasks: int) -> ClusterState:
    """RSS delta and tracemalloc figures for a model holding ``n_tasks``. Events are generated on the fly
    and dropped after apply, as with a live receiver, so what remains is what the model keeps."""
    gc.collect()
    rss_before = rss_mb()
    state = ClusterState(max_tasks=n_tasks)
    state.apply_many(events(n_tasks))
    gc.collect()
    rss_delta = rss_mb() - rss_before
    tracemalloc.start()  # a second model, traced alone (the first one stays for the query timings)
    traced = ClusterState(max_tasks=n_tasks)
    traced.apply_many(events(n_tasks))
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del traced
    gc.collect()
    print(
        f"memory with {n_tasks:,} tasks tracked: tracemalloc current {current / 2**20:.1f} MB "
        f"({current / n_tasks:,.0f} B/task), peak {peak / 2**20:.1f} MB; RSS delta {rss_delta:.1f} MB"
    )
    stats = state.stats()
    print(
        f"stats: tasks={stats['tasks']:,} failures={stats['failures']:,} "
        f"approx_bytes={stats['approx_bytes'] / 2**20:.1f} MB (estimate) events_applied={stats['events_applied']:,}"
    )
    return state


def time_queries(state: ClusterState) -> None:
    """Console-style queries; a full GC pass is timed apart because it lands on whatever runs next."""
    start = time.perf_counter()
    gc.collect()
    timings = [f"full gc pass {(time.perf_counter() - start) * 1000:.0f} ms"]
    for label, query in [
        ("tasks(limit=50)", lambda: state.tasks(limit=50)),
        ("failures()", state.failures),
        ("tasks(text=..., limit=20)", lambda: state.tasks(text="declined", limit=20)),
        ("tasks(text=no hit) full scan", lambda: state.tasks(text="no such thing")),
        ("snapshot(limit=100)", lambda: state.snapshot(limit=100)["tasks"]),
    ]:
        start = time.perf_counter()
        found = query()
        timings.append(f"{label} {(time.perf_counter() - start) * 1000:.1f} ms ({len(found)})")
    print("queries: " + "; ".join(timings))


def time_throughput(n_tasks: int) -> None:
    stream = list(events(n_tasks))  # built up front so the timed loop measures only the reducer
    gc.collect()
    for cap in (n_tasks, n_tasks // 10):
        state = ClusterState(max_tasks=cap)
        start = time.perf_counter()
        state.apply_many(stream)
        elapsed = time.perf_counter() - start
        stats = state.stats()
        print(
            f"throughput max_tasks={cap:,}: {len(stream) / elapsed:,.0f} events/s ({len(stream):,} events in "
            f"{elapsed:.2f} s; kept {stats['tasks']:,} tasks incl. {stats['failures']:,} failures)"
        )
        del state
        gc.collect()


def main(n_tasks: int = 100_000) -> None:
    print(f"python {sys.version.split()[0]}; {n_tasks:,} tasks (received/started/succeeded, 2% failed)")
    state = measure_memory(n_tasks)
    time_queries(state)
    del state
    time_throughput(n_tasks)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
