"""``tqctl worker``: run a worker with Celery's flag names."""

from __future__ import annotations

import logging
import sys

import typer

from engine.exceptions import BrokerUnavailable, ImproperlyConfigured
from engine.worker.worker import POOLS, Worker
from tqctl.loader import AppNotFound, load_app
from tqctl.output import EXIT_USAGE, fail

LEVELS = {"debug", "info", "warning", "error", "critical"}


def worker(
    app_spec: str = typer.Option(..., "-A", "--app", help="module or module:attr holding the App"),
    concurrency: int = typer.Option(0, "-c", "--concurrency", help="pool size (default: CPUs)"),
    pool: str = typer.Option("prefork", "-P", "--pool", help="prefork | threads | solo"),
    queues: str = typer.Option("", "-Q", "--queues", help="comma-separated queues to consume"),
    hostname: str = typer.Option("", "-n", "--hostname", help="node name, e.g. w1@%h"),
    prefetch_multiplier: int = typer.Option(0, "--prefetch-multiplier"),
    autoscale: str = typer.Option("", "--autoscale", help="MAX,MIN: grow and shrink the pool with load"),
    beat: bool = typer.Option(False, "-B", "--beat", help="also run beat (periodic tasks) in this worker"),
    loglevel: str = typer.Option("info", "-l", "--loglevel"),
    broker: str = typer.Option("", "--broker", envvar="TQCTL_BROKER", help="broker URL"),
    backend: str = typer.Option("", "--backend", envvar="TQCTL_BACKEND", help="result backend"),
) -> None:
    """Run a worker: fetch tasks from the queues and run them in a pool."""
    if pool not in POOLS:
        fail(f"unknown pool {pool!r}: use prefork, threads or solo", EXIT_USAGE)
    if loglevel.lower() not in LEVELS:
        fail(f"unknown log level {loglevel!r}: use {', '.join(sorted(LEVELS))}", EXIT_USAGE)
    logging.basicConfig(level=loglevel.upper(), stream=sys.stderr,
                        format="[%(asctime)s: %(levelname)s/%(processName)s] %(message)s")
    scale = _parse_autoscale(autoscale) if autoscale else None
    try:
        app = load_app(app_spec)
    except AppNotFound as exc:
        fail(str(exc), EXIT_USAGE)
    if broker:
        app.conf.broker_url = broker
    if backend:
        app.conf.result_backend = backend
    try:
        node = Worker(app, concurrency=concurrency or None, pool=pool,
                      queues=[q for q in queues.split(",") if q] or None,
                      hostname=hostname or None, prefetch_multiplier=prefetch_multiplier or None,
                      autoscale=scale)
        code = _run(node, app, beat)
    except (BrokerUnavailable, ImproperlyConfigured) as exc:
        fail(str(exc))
    raise typer.Exit(code)


def _parse_autoscale(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        fail(f"--autoscale takes MAX,MIN (numbers), not {text!r}", EXIT_USAGE)
    high, low = (parts + [0])[:2] if len(parts) == 1 else parts[:2]
    if high < 1 or low < 0 or low > high:
        fail(f"--autoscale MAX,MIN needs MAX >= MIN >= 0 and MAX >= 1, not {text!r}", EXIT_USAGE)
    return high, low


def _run(node: Worker, app: object, with_beat: bool) -> int:
    """Run the worker, with an embedded beat thread when ``-B`` asks for one."""
    if not with_beat:
        return node.run()
    from engine.beat import Beat

    scheduler = Beat(app)
    thread, stop = scheduler.start_thread()
    try:
        return node.run()
    finally:
        stop.set()
        thread.join(5)
        scheduler.close()
