"""I/O-bound work, tqctl against Celery 5.7 on the same server and the same local HTTP server.

Run: ``PYTHONPATH=. python tests/bench/io_compare.py [--tasks 2000 --concurrency 1000 --json FILE]``.

Figures (see ``tqctl.io_bench``): tasks/s for N tasks each waiting 0.5 s on HTTP, through tqctl
``-P asyncio`` and ``-P gevent`` and Celery ``-P gevent`` at the same ``-c``; worker memory per 1,000
tasks in flight; enqueue rates: tqctl's ``adelay()`` from 100 concurrent callers, Celery's
``delay()`` loop, and raw pipelined LPUSH. One private server on loopback TCP serves everything.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine import bundled  # noqa: E402
from tqctl import io_bench  # noqa: E402
from tqctl.termination import terminated_by  # noqa: E402


def celery_worker(url: str, server: io_bench.SlowHTTP, opts: io_bench.IOOptions, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "celery", "-A", "tests.bench.celery_ioapp", "worker", "-P", "gevent"]
    argv += ["-c", str(opts.concurrency), "-Q", io_bench.QUEUE, "-l", "warning"]
    argv += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
    env = {**os.environ, "BENCH_BROKER_URL": url, "TQCTL_IO_URL": server.url, "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)


def measure_celery(url: str, opts: io_bench.IOOptions, logdir: Path) -> dict[str, float]:
    os.environ["BENCH_BROKER_URL"] = url
    from tests.bench import celery_ioapp

    app = io_bench.engine_app(url)  # publishes Celery's wire format; the worker is Celery's
    client = io_bench.client_from_url(url)
    server = io_bench.SlowHTTP(opts.wait)
    result: dict[str, float] = {}
    try:
        worker = celery_worker(url, server, opts, logdir / "celery-gevent.log")
        try:
            result.update(
                io_bench.measure_worker(app, client, server, worker, "tqctl.examples.ioapp.wait_http_sync", opts)
            )
        finally:
            io_bench.stop(worker)
        client.delete(io_bench.QUEUE)
        celery_ioapp.noop.delay(0)  # connected before the clock starts
        started = time.perf_counter()
        for i in range(opts.enqueue):
            celery_ioapp.noop.delay(i)
        result["enqueue_delay_loop_per_s"] = opts.enqueue / (time.perf_counter() - started)
        client.delete(io_bench.QUEUE)
    finally:
        server.close()
        app.close()
        client.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--enqueue", type=int, default=10_000)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with (
        terminated_by(signal.SIGTERM),
        tempfile.TemporaryDirectory(prefix="tqctl-io-") as tmp,
        bundled.start_private(tmp, None, unix_socket=False) as server,
    ):
        print(f"server: pid {server.pid} at {server.url}", file=sys.stderr)
        logs = Path(tmp)
        for pool in ("asyncio", "gevent"):
            opts = io_bench.IOOptions(tasks=args.tasks, concurrency=args.concurrency, enqueue=args.enqueue, pool=pool)
            results[f"tqctl -P {pool}"] = io_bench.measure_engine(
                server.url, opts, lambda m: print(m, file=sys.stderr), logs
            )
        opts = io_bench.IOOptions(tasks=args.tasks, concurrency=args.concurrency, enqueue=args.enqueue)
        print("celery -P gevent", file=sys.stderr)
        results["celery -P gevent"] = measure_celery(server.url, opts, logs)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2) + "\n")
    for name, figures in results.items():
        print(f"\n## {name}")
        for key, value in figures.items():
            print(f"{key:32} {value:12.1f}")
    ours, theirs = results["tqctl -P asyncio"], results["celery -P gevent"]
    print("\n## ratios")
    print(f"{'io tasks/s, asyncio / celery gevent':40} {ours['io_tasks_per_s'] / theirs['io_tasks_per_s']:8.2f}x")
    print(
        f"{'enqueue, adelay x100 / celery delay()':40} "
        f"{ours['enqueue_async_per_s'] / theirs['enqueue_delay_loop_per_s']:8.2f}x"
    )
    print(
        f"{'enqueue, adelay x100 / raw LPUSH':40} {ours['enqueue_async_per_s'] / ours['enqueue_raw_lpush_per_s']:8.2f}"
    )


if __name__ == "__main__":
    main()
