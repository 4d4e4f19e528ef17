"""``tqctl bench``: throughput, latency, memory and CPU of the cluster it is pointed at.

Starts its own worker processes of ``tqctl.examples.benchapp`` on a dedicated queue
(``tqctl.bench``), so real queues are never touched; the measuring lives in ``tqctl.benchmark``.
"""

from __future__ import annotations

import typer

from engine.exceptions import BrokerUnavailable, ImproperlyConfigured
from tqctl import benchmark
from tqctl.client import resolve_broker_url, resolve_state_dir
from tqctl.commands.values import url_option
from tqctl.output import EXIT_ERROR, EXIT_USAGE, emit_json, emit_table, fail, note


def bench(
    tasks: int = typer.Option(20_000, "-n", "--tasks", help="tasks per enqueue and drain measurement"),
    runs: int = typer.Option(3, "--runs", help="runs; every figure is their median"),
    processes: int = typer.Option(2, "--processes", help="worker pool processes in total"),
    workers: int = typer.Option(
        1,
        "--workers",
        help="worker nodes sharing them: 1 = one worker -c PROCESSES, PROCESSES = that many workers -c 1",
    ),
    pool: str = typer.Option("prefork", "-P", "--pool", help="prefork | threads | solo"),
    rate: float = typer.Option(200.0, "--rate", help="tasks/s for the steady latency measurement"),
    latency_seconds: float = typer.Option(10.0, "--latency-seconds", help="length of the steady latency run"),
    idle: float = typer.Option(60.0, "--idle", help="seconds of silence before the sparse-task latency"),
    sparse: int = typer.Option(5, "--sparse", help="sparse tasks after the idle period (1 s apart)"),
    stall: float = typer.Option(60.0, "--stall", help="give up on a phase after this long without progress"),
    broker: str = typer.Option(
        "", "--broker", envvar="TQCTL_BROKER", callback=url_option, help="broker URL (default: bundled)"
    ),
    broker_pid: int = typer.Option(0, "--broker-pid", help="broker server pid for its CPU (default: found when local)"),
    bulk: int = typer.Option(10_000, "--bulk", help="tasks in the bulk enqueue measurement (at most --tasks)"),
    quick: bool = typer.Option(
        False, "--quick", help="a short run: 5,000 tasks, 1 run, 5 s latency, 5 s idle (unless given)"
    ),
    as_json: bool = typer.Option(False, "--json", help="the figures as JSON (snake_case keys)"),
) -> None:
    """Measure enqueue and drain rates, publish-to-start latency, worker memory and CPU per task."""
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
        target = benchmark.engine_target(url)
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
