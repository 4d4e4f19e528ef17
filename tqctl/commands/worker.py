"""``tqctl worker``: run a worker with Celery's flag names."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import typer

from engine.extras import install_hint
from engine.worker.worker import MAX_CONCURRENCY, MAX_PREFETCH_MULTIPLIER, POOLS
from tqctl.commands.values import name_argument, names_option, required_app_option, url_option
from tqctl.output import EXIT_USAGE, fail
from tqctl.worker_process import WorkerSpec, exec_worker

LEVELS = {"debug", "info", "warning", "error", "critical"}


def worker(
    app_spec: str = typer.Option(
        "", "-A", "--app", callback=required_app_option, help="module or module:attr holding the App"
    ),
    concurrency: int = typer.Option(
        0,
        "-c",
        "--concurrency",
        min=0,
        max=MAX_CONCURRENCY,
        help=f"pool size (default: CPUs; at most {MAX_CONCURRENCY})",
    ),
    pool: str = typer.Option("prefork", "-P", "--pool", help="prefork | threads | solo | asyncio | gevent"),
    queues: str = typer.Option(
        "", "-Q", "--queues", callback=names_option("queue name"), help="comma-separated queues to consume"
    ),
    hostname: str = typer.Option(
        "", "-n", "--hostname", callback=name_argument("node name"), help="node name, e.g. w1@%h"
    ),
    prefetch_multiplier: int = typer.Option(0, "--prefetch-multiplier", min=0, max=MAX_PREFETCH_MULTIPLIER),
    autoscale: str = typer.Option("", "--autoscale", help="MAX,MIN: grow and shrink the pool with load"),
    beat: bool = typer.Option(False, "-B", "--beat", help="also run beat (periodic tasks) in this worker"),
    loglevel: str = typer.Option("info", "-l", "--loglevel"),
    broker: str = typer.Option("", "--broker", envvar="TQCTL_BROKER", callback=url_option, help="broker URL"),
    backend: str = typer.Option("", "--backend", envvar="TQCTL_BACKEND", callback=url_option, help="result backend"),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", min=0, max=65535, show_default=False, help="serve this worker's Prometheus metrics"
    ),
    metrics_address: str = typer.Option("0.0.0.0", "--metrics-address", help="address for --metrics-port"),
    health_file: str = typer.Option(
        "", "--health-file", help="rewrite this file on each heartbeat while the worker makes progress"
    ),
) -> None:
    """Run a worker: fetch tasks from the queues and run them in a pool."""
    if pool not in POOLS:
        fail(f"unknown pool {pool!r}: use {', '.join(POOLS)}", EXIT_USAGE)
    needs = {"gevent": "gevent", "asyncio": "greenlet"}.get(pool)
    if needs and importlib.util.find_spec(needs) is None:
        fail(f"-P {pool} needs {needs}: {install_hint(pool)}", EXIT_USAGE)
    if loglevel.lower() not in LEVELS:
        fail(f"unknown log level {loglevel!r}: use {', '.join(sorted(LEVELS))}", EXIT_USAGE)
    scale = _parse_autoscale(autoscale) if autoscale else None
    if metrics_port is not None:
        _need_prometheus()
    if health_file:
        _need_folder(health_file)
    exec_worker(
        WorkerSpec(
            app_spec=app_spec,
            concurrency=concurrency or None,
            pool=pool,
            queues=[q.strip() for q in queues.split(",") if q.strip()] or None,
            hostname=hostname or None,
            prefetch_multiplier=prefetch_multiplier or None,
            autoscale=scale,
            beat=beat,
            loglevel=loglevel.lower(),
            broker=broker,
            backend=backend,
            metrics_port=metrics_port,
            metrics_address=metrics_address,
            health_file=health_file or None,
        )
    )


def _need_prometheus() -> None:
    """Fail before the worker starts, not in its log after it connected."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        from tqctl.metrics import MISSING

        fail(MISSING, EXIT_USAGE)


def _need_folder(health_file: str) -> None:
    """Refuse at startup a --health-file whose folder is missing or read-only: the worker would run
    and only log an error, and the probe reading the file would call it dead."""
    folder = Path(health_file).expanduser().absolute().parent
    if not folder.is_dir():
        fail(f"--health-file: folder {str(folder)!r} does not exist", EXIT_USAGE)
    if not os.access(folder, os.W_OK | os.X_OK):
        fail(f"--health-file: folder {str(folder)!r} is not writable", EXIT_USAGE)


def _parse_autoscale(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        fail(f"--autoscale takes MAX,MIN (numbers), not {text!r}", EXIT_USAGE)
    high, low = (parts + [0])[:2] if len(parts) == 1 else parts[:2]
    if high < 1 or low < 0 or low > high:
        fail(f"--autoscale MAX,MIN needs MAX >= MIN >= 0 and MAX >= 1, not {text!r}", EXIT_USAGE)
    return high, low
