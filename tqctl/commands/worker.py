"""``tqctl worker``: run a worker with Celery's flag names."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import typer

from engine.bundled import pid_alive
from engine.extras import install_hint
from engine.worker.worker import MAX_CONCURRENCY, MAX_PREFETCH_MULTIPLIER, POOLS
from tqctl.commands.values import name_argument, names_option, required_app_option, url_option
from tqctl.output import EXIT_USAGE, fail
from tqctl.worker_process import WorkerSpec, exec_worker

LEVELS = {"debug", "info", "warning", "error", "critical"}
# Celery's other spellings of the same choices, so a deploy script's ``-P processes -l FATAL`` runs.
POOL_ALIASES = {"processes": "prefork"}
LEVEL_ALIASES = {"fatal": "critical"}


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
    task_events: bool = typer.Option(
        False,
        "-E",
        "--task-events",
        "--events",
        help="send task events (the default; turns them back on over the config)",
    ),
    time_limit: float | None = typer.Option(
        None, "--time-limit", show_default=False, help="hard time limit in seconds for every task (task_time_limit)"
    ),
    soft_time_limit: float | None = typer.Option(
        None, "--soft-time-limit", show_default=False, help="soft time limit in seconds (task_soft_time_limit)"
    ),
    max_tasks_per_child: int | None = typer.Option(
        None,
        "--max-tasks-per-child",
        min=1,
        show_default=False,
        help="prefork: replace a child after it ran this many tasks (worker_max_tasks_per_child)",
    ),
    max_memory_per_child: int | None = typer.Option(
        None,
        "--max-memory-per-child",
        min=1,
        show_default=False,
        help="prefork: replace a child after a task leaves it above this resident memory, in KiB",
    ),
    optimization: str = typer.Option(
        "", "-O", "--optimization", help="default | fair: accepted; the prefork pool is always fair"
    ),
    without_gossip: bool = typer.Option(False, "--without-gossip", help="accepted: tqctl has no gossip"),
    without_mingle: bool = typer.Option(False, "--without-mingle", help="accepted: tqctl has no mingle"),
    without_heartbeat: bool = typer.Option(
        False, "--without-heartbeat", help="accepted: the owner heartbeat reliability needs keeps running"
    ),
    pidfile: str = typer.Option("", "--pidfile", help="write the worker's pid here; removed at exit"),
    logfile: str = typer.Option("", "-f", "--logfile", help="log here instead of stderr (%n %h %d %i %I expanded)"),
    statedb: str = typer.Option("", "-S", "--statedb", help="accepted: revokes are kept in the broker"),
    detach: bool = typer.Option(False, "-D", "--detach", help="refused: run under systemd (deploy/systemd)"),
    include: str = typer.Option("", "-I", "--include", help="comma-separated modules to import at start (tasks)"),
    exclude_queues: str = typer.Option(
        "", "-X", "--exclude-queues", callback=names_option("queue name"), help="comma-separated queues not to consume"
    ),
    schedule: str = typer.Option(
        "", "-s", "--schedule-filename", "--schedule", help="accepted: beat's state is in the broker"
    ),
    purge: bool = typer.Option(
        False, "--purge", "--discard", help="delete the waiting messages of the worker's queues before starting"
    ),
    disable_prefetch: bool = typer.Option(False, "--disable-prefetch", help="refused: use --prefetch-multiplier 1"),
    uid: str = typer.Option("", "--uid", help="refused: start the worker as that user"),
    gid: str = typer.Option("", "--gid", help="refused: start the worker as that group"),
) -> None:
    """Run a worker: fetch tasks from the queues and run them in a pool."""
    pool = POOL_ALIASES.get(pool, pool)
    loglevel = LEVEL_ALIASES.get(loglevel.lower(), loglevel)
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
        _need_folder(health_file, "--health-file")
    _refuse_unsupported(
        {
            "-D/--detach": detach,
            "--disable-prefetch": disable_prefetch,
            "--uid/--gid": uid or gid,
        }
    )
    _check_limits(time_limit, soft_time_limit)
    if optimization and optimization not in ("default", "fair"):
        fail(f"-O takes default or fair, not {optimization!r}", EXIT_USAGE)
    files = _node_files(hostname, pidfile, logfile)
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
            task_events=task_events,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            max_tasks_per_child=max_tasks_per_child,
            max_memory_per_child=max_memory_per_child,
            pidfile=files[0],
            logfile=files[1],
            include=[m.strip() for m in include.split(",") if m.strip()] or None,
            exclude_queues=[q.strip() for q in exclude_queues.split(",") if q.strip()] or None,
            purge=purge,
        )
    )


def _need_prometheus() -> None:
    """Fail before the worker starts, not in its log after it connected."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        from tqctl.metrics import MISSING

        fail(MISSING, EXIT_USAGE)


def _need_folder(path: str, flag: str) -> None:
    """Refuse at startup a file whose folder is missing or read-only: the worker would run and only
    log an error (or log nowhere), and the probe or script reading the file would call it dead."""
    folder = Path(path).expanduser().absolute().parent
    if not folder.is_dir():
        fail(f"{flag}: folder {str(folder)!r} does not exist", EXIT_USAGE)
    if not os.access(folder, os.W_OK | os.X_OK):
        fail(f"{flag}: folder {str(folder)!r} is not writable", EXIT_USAGE)


# Celery flags the engine cannot honour: a deploy script that relies on daemonizing or on
# dropping privileges must not start a worker that silently does none of it.
REFUSED = {
    "-D/--detach": "run the worker under systemd (deploy/systemd/tqctl-worker.service)",
    "--disable-prefetch": "use --prefetch-multiplier 1",
    "--uid/--gid": "start the worker as that user (systemd User=/Group=)",
}


def _refuse_unsupported(given: dict[str, object]) -> None:
    """The first refused flag the user gave, in one line naming what to do instead."""
    for flag, value in given.items():
        if value not in (None, False, ""):
            fail(f"{flag} is not supported: {REFUSED[flag]}", EXIT_USAGE)


def _check_limits(hard: float | None, soft: float | None) -> None:
    """Celery's worker takes any float; a zero, negative or NaN limit would kill every task at once
    or never, so it is refused here rather than discovered on the first task."""
    for flag, value in (("--time-limit", hard), ("--soft-time-limit", soft)):
        if value is not None and not value > 0:
            fail(f"{flag} takes a number of seconds above 0, not {value}", EXIT_USAGE)
    if hard is not None and soft is not None and soft > hard:
        fail(f"--soft-time-limit ({soft}) must not be above --time-limit ({hard})", EXIT_USAGE)


def _node_files(hostname: str, pidfile: str, logfile: str) -> tuple[str | None, str | None]:
    """``%n``/``%h``/``%i`` expanded as Celery's worker does (``celery multi`` writes such names),
    folders checked, and a pidfile held by a live worker refused (Celery's "already running")."""
    from engine.utils.nodenames import node_format
    from engine.worker.worker import node_name

    expanded: list[str | None] = []
    for flag, path in (("--pidfile", pidfile), ("--logfile", logfile)):
        if not path:
            expanded.append(None)
            continue
        try:
            path = node_format(path, node_name(hostname or None))
        except ValueError as exc:
            fail(f"{flag}: {exc}", EXIT_USAGE)
        _need_folder(path, flag)
        expanded.append(str(Path(path).expanduser().absolute()))
    if expanded[0]:
        _refuse_live_pidfile(Path(expanded[0]))
    return expanded[0], expanded[1]


def _refuse_live_pidfile(path: Path) -> None:
    """Two workers on one pidfile would each remove the other's at exit; a stale one is replaced."""
    try:
        pid = int(path.read_text().strip() or 0)
    except FileNotFoundError:
        return
    except (OSError, ValueError):
        fail(f"--pidfile: {str(path)!r} exists and does not hold a pid", EXIT_USAGE)
    if pid and pid != os.getpid() and pid_alive(pid):
        fail(f"--pidfile: {str(path)!r} holds pid {pid}, which is running", EXIT_USAGE)


def _parse_autoscale(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        fail(f"--autoscale takes MAX,MIN (numbers), not {text!r}", EXIT_USAGE)
    high, low = (parts + [0])[:2] if len(parts) == 1 else parts[:2]
    if high < 1 or low < 0 or low > high:
        fail(f"--autoscale MAX,MIN needs MAX >= MIN >= 0 and MAX >= 1, not {text!r}", EXIT_USAGE)
    return high, low
