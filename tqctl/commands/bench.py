"""``tqctl bench``: throughput, latency, memory and CPU of the cluster it is pointed at.

Starts its own worker processes of ``tqctl.examples.benchapp`` on a dedicated queue
(``tqctl.bench``), so real queues are never touched; the measuring lives in ``tqctl.benchmark``.
"""

from __future__ import annotations

import signal

import typer

from engine.exceptions import BrokerUnavailable, ImproperlyConfigured
from tqctl import benchmark
from tqctl.client import resolve_broker_url, resolve_state_dir
from tqctl.commands.values import finite_option, given_on_command_line, url_option
from tqctl.output import EXIT_ERROR, EXIT_USAGE, emit_json, emit_table, fail, note
from tqctl.termination import terminated_by

# Bounds past which a figure means nothing or the run never ends (a rate of 1e20/s, an idle of inf).
MAX_TASKS = 10_000_000
MAX_RATE = 100_000.0  # tasks/s: beyond any broker's one-by-one publish, so no steady rate to measure
MAX_SECONDS = 3600.0


def bench(
    ctx: typer.Context,
    tasks: int = typer.Option(
        20_000, "-n", "--tasks", min=1, max=MAX_TASKS, help="tasks per enqueue and drain measurement"
    ),
    runs: int = typer.Option(3, "--runs", min=1, max=100, help="runs; every figure is their median"),
    processes: int = typer.Option(2, "--processes", min=1, max=1024, help="worker pool processes in total"),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        max=1024,
        help="worker nodes sharing them: 1 = one worker -c PROCESSES, PROCESSES = that many workers -c 1",
    ),
    pool: str = typer.Option("prefork", "-P", "--pool", help="prefork | threads | solo"),
    rate: float = typer.Option(
        200.0, "--rate", max=MAX_RATE, callback=finite_option, help="tasks/s for the steady latency measurement"
    ),
    latency_seconds: float = typer.Option(
        10.0,
        "--latency-seconds",
        min=0,
        max=MAX_SECONDS,
        callback=finite_option,
        help="length of the steady latency run",
    ),
    idle: float = typer.Option(
        60.0,
        "--idle",
        min=0,
        max=MAX_SECONDS,
        callback=finite_option,
        help="seconds of silence before the sparse-task latency",
    ),
    sparse: int = typer.Option(5, "--sparse", min=1, max=1000, help="sparse tasks after the idle period (1 s apart)"),
    stall: float = typer.Option(
        60.0,
        "--stall",
        min=0,
        max=MAX_SECONDS,
        callback=finite_option,
        help="give up on a phase after this long without progress",
    ),
    broker: str = typer.Option(
        "", "--broker", envvar="TQCTL_BROKER", callback=url_option, help="broker URL (default: bundled)"
    ),
    backend: str = typer.Option(
        "", "--backend", envvar="TQCTL_BACKEND", callback=url_option, help="result backend (needed on AMQP: Redis)"
    ),
    broker_pid: int = typer.Option(
        0, "--broker-pid", min=0, help="broker server pid for its CPU (default: found when local)"
    ),
    bulk: int = typer.Option(
        10_000, "--bulk", min=1, max=MAX_TASKS, help="tasks in the bulk enqueue measurement (at most --tasks)"
    ),
    quick: bool = typer.Option(
        False, "--quick", help="a short run: 5,000 tasks, 1 run, 5 s latency, 5 s idle (unless given)"
    ),
    as_json: bool = typer.Option(False, "--json", help="the figures as JSON (snake_case keys)"),
    io: bool = typer.Option(
        False, "--io", help="I/O-bound figures instead: tasks waiting on a local HTTP server (-P asyncio|gevent)"
    ),
    io_tasks: int = typer.Option(2000, "--io-tasks", help="with --io: tasks, each waiting 0.5 s"),
    io_concurrency: int = typer.Option(1000, "--io-concurrency", help="with --io: the worker's -c"),
    io_enqueue: int = typer.Option(10_000, "--io-enqueue", help="with --io: messages per enqueue measurement"),
) -> None:
    """Measure enqueue and drain rates, publish-to-start latency, worker memory and CPU per task."""
    if not io and (stray := [f"--{n.replace('_', '-')}" for n in IO_OPTIONS if given_on_command_line(ctx, n)]):
        fail(f"{', '.join(stray)} {'applies' if len(stray) == 1 else 'apply'} only with --io", EXIT_USAGE)
    if io:
        _bench_io(broker, "asyncio" if pool == "prefork" else pool, (io_tasks, io_concurrency, io_enqueue), as_json)
        return
    if quick:
        tasks, runs, latency_seconds, idle, bulk = _quick(tasks, runs, latency_seconds, idle, bulk)
    if tasks < 1 or runs < 1 or processes < 1 or workers < 1 or rate <= 0 or sparse < 1:
        fail("--tasks, --runs, --processes, --workers, --rate and --sparse must be positive", EXIT_USAGE)
    if processes % workers:
        fail(f"--processes {processes} must be a multiple of --workers {workers}", EXIT_USAGE)
    if pool not in ("prefork", "threads", "solo"):
        fail(f"unknown pool {pool!r}: use prefork, threads or solo", EXIT_USAGE)
    try:
        url = resolve_broker_url(broker or None)
        target = benchmark.engine_target(url, backend or None)
    except (BrokerUnavailable, ImproperlyConfigured) as exc:
        fail(str(exc))
    opts = benchmark.Options(
        tasks=tasks,
        runs=runs,
        bulk=bulk,
        processes=processes,
        workers=workers,
        pool=pool,
        rate=rate,
        latency_seconds=latency_seconds,
        idle=idle,
        sparse=sparse,
        stall=stall,
        broker_pid=broker_pid or _bundled_pid(url),
    )
    try:
        with terminated_by(signal.SIGTERM):
            result = benchmark.measure(target, opts, note)
    except (benchmark.BenchError, BrokerUnavailable, ImproperlyConfigured) as exc:
        fail(str(exc))
    if as_json:
        emit_json(result)
    else:
        emit_table(
            benchmark.rows(result),
            ["figure", "value", "unit"],
            title=f"tqctl bench: {tasks} tasks, {processes} processes ({pool}), median of {runs}",
        )
    if not result.get("complete"):
        note("tqctl: error: not every task sent was counted (see the *_sent / *_completed figures)")
        raise typer.Exit(EXIT_ERROR)


IO_OPTIONS = ("io_tasks", "io_concurrency", "io_enqueue")


def _bench_io(broker: str, pool: str, sizes: tuple[int, int, int], as_json: bool) -> None:
    """``--io``: tqctl.io_bench's figures for one pool (tests/bench/io_compare.py adds Celery's)."""
    import tempfile
    from pathlib import Path

    from tqctl import io_bench

    if pool not in ("asyncio", "gevent"):
        fail(f"--io measures -P asyncio or -P gevent, not {pool!r}", EXIT_USAGE)
    tasks, concurrency, enqueue = sizes
    if tasks < 1 or enqueue < 100 or not 1 <= concurrency <= 1024:
        fail("--io-tasks must be positive, --io-enqueue at least 100 and --io-concurrency 1 to 1024", EXIT_USAGE)
    opts = io_bench.IOOptions(tasks=tasks, concurrency=concurrency, pool=pool, enqueue=enqueue)
    try:
        url = resolve_broker_url(broker or None)
        with terminated_by(signal.SIGTERM), tempfile.TemporaryDirectory(prefix="tqctl-io-") as logs:
            result = io_bench.measure_engine(url, opts, note, Path(logs))
    except (io_bench.BenchError, BrokerUnavailable, ImproperlyConfigured) as exc:
        fail(str(exc))
    if as_json:
        emit_json(result)
        return
    units = {"io_tasks_per_s": "tasks/s", "mem_mb_per_1000_in_flight": "MB", "enqueue_async_per_s": "msg/s"}
    emit_table(
        [{"figure": k, "value": f"{v:,.1f}", "unit": units.get(k, "msg/s")} for k, v in result.items()],
        ["figure", "value", "unit"],
        title=f"tqctl bench --io: {tasks} tasks x 0.5 s HTTP wait, -P {pool} -c {concurrency}",
    )


def _quick(tasks: int, runs: int, latency_seconds: float, idle: float, bulk: int) -> tuple[int, int, float, float, int]:
    """--quick's smaller defaults; an option given explicitly (not its default) still wins."""
    pick = lambda given, default, short: short if given == default else given  # noqa: E731
    tasks = pick(tasks, 20_000, 5_000)
    return (
        tasks,
        pick(runs, 3, 1),
        pick(latency_seconds, 10.0, 5.0),
        pick(idle, 60.0, 5.0),
        pick(bulk, 10_000, min(tasks, 5_000)),
    )


def _bundled_pid(url: str) -> int | None:
    """The bundled server's pid when ``url`` is the bundled server (its CPU is then read from /proc)."""
    from engine import bundled

    status = bundled.status(resolve_state_dir())
    return status.pid if status.running and status.url == url else None
