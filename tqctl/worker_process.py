"""The worker process: what ``tqctl worker`` becomes once its flags are checked.

``tqctl worker`` parses and validates with Typer, then replaces itself (``exec``, same pid) with
``python -m tqctl <same arguments>`` carrying the parsed options in ``SPEC_ENV``. ``tqctl.__main__``
sees the variable and comes here without importing Typer, the other commands or their
dependencies: a long-lived worker and its forked pool children should hold the engine, not the
CLI (about 10 MB less per worker tree). The command line stays the user's, so ``pgrep -f
"tqctl worker"`` still finds it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

from tqctl.output import EXIT_ERROR, EXIT_USAGE, error_line

# ``tqctl.__main__`` imports this module on every run to look for SPEC_ENV, so the engine is
# imported in ``serve`` and ``main``, once we know this process is a worker.
SPEC_ENV = "_TQCTL_WORKER_SPEC"


@dataclass(frozen=True)
class WorkerSpec:
    app_spec: str
    concurrency: int | None = None
    pool: str = "prefork"
    queues: list[str] | None = None
    hostname: str | None = None
    prefetch_multiplier: int | None = None
    autoscale: tuple[int, int] | None = None
    beat: bool = False
    loglevel: str = "info"
    broker: str = ""
    backend: str = ""
    metrics_port: int | None = None
    metrics_address: str = "0.0.0.0"
    health_file: str | None = None
    task_events: bool = False
    time_limit: float | None = None
    soft_time_limit: float | None = None
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None
    pidfile: str | None = None
    logfile: str | None = None
    include: list[str] | None = None
    exclude_queues: list[str] | None = None
    purge: bool = False


def exec_worker(spec: WorkerSpec) -> NoReturn:
    """Become the worker process: same pid (signals and supervisors keep working), lean memory."""
    package_root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env[SPEC_ENV] = json.dumps(asdict(spec))  # not argv: the broker URL may hold a password
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "tqctl", *masked_argv(sys.argv[1:])], env)


def masked_argv(argv: list[str]) -> list[str]:
    """The user's arguments with every URL's password masked: argv is world-readable (``ps``,
    /proc/<pid>/cmdline) for the worker's whole life and every pool child's; the real URLs
    travel in ``SPEC_ENV``, which only the process's owner can read."""
    from engine.config import mask_url

    def mask(arg: str) -> str:
        if "://" not in arg:
            return arg
        flag, eq, value = arg.partition("=")
        if eq and flag.startswith("-") and "://" in value:
            return f"{flag}={mask_url(value)}"
        return mask_url(arg)

    return [mask(arg) for arg in argv]


def serve(spec: WorkerSpec) -> int:
    from engine.log import setup_worker_logging
    from engine.worker.worker import Worker
    from tqctl.loader import load_app

    logging.basicConfig(
        level=spec.loglevel.upper(),
        stream=sys.stderr,
        format="[%(asctime)s: %(levelname)s/%(processName)s] %(message)s",
    )
    app = load_app(spec.app_spec)
    if spec.broker:
        app.conf.broker_url = spec.broker
    if spec.backend:
        app.conf.result_backend = spec.backend
    _apply_flags(app.conf, spec)
    # Celery's: setup_logging, after_setup_(task_)logger, formats
    setup_worker_logging(app, spec.loglevel, spec.logfile)
    app.import_default_modules()
    for line in app.conf.startup_warnings():
        logging.getLogger("engine.worker").warning(line)
    queues = _queues(app.conf, spec)
    if spec.purge:
        _purge(app, queues or [app.conf.task_default_queue])
    node = Worker(
        app,
        concurrency=spec.concurrency,
        pool=spec.pool,
        queues=queues,
        hostname=spec.hostname,
        prefetch_multiplier=spec.prefetch_multiplier,
        autoscale=(spec.autoscale[0], spec.autoscale[1]) if spec.autoscale else None,  # JSON made it a list
    )
    close = _observe(node, spec)
    try:
        if not spec.beat:
            return node.run()
        from engine.beat import Beat

        scheduler = Beat(app)  # embedded beat (``-B``): a thread beside the worker
        thread, stop = scheduler.start_thread()
        try:
            return node.run()
        finally:
            stop.set()
            thread.join(5)
            scheduler.close()
    finally:
        close()


def _apply_flags(conf: Any, spec: WorkerSpec) -> None:
    """Celery's worker flags win over the app's config, as they do in Celery: ``-E`` turns task
    events back on for an app that disabled them, the limits become the worker-wide defaults."""
    if spec.task_events:
        conf.worker_send_task_events = True
    if spec.time_limit is not None:
        conf.task_time_limit = spec.time_limit
    if spec.soft_time_limit is not None:
        conf.task_soft_time_limit = spec.soft_time_limit
    if spec.max_tasks_per_child is not None:
        conf.worker_max_tasks_per_child = spec.max_tasks_per_child
    if spec.max_memory_per_child is not None:
        conf.worker_max_memory_per_child = spec.max_memory_per_child
    if spec.include:  # Celery's ``-I``: added to ``include``, imported with it at start
        conf.include = [*(conf.get("include") or ()), *spec.include]


def _queues(conf: Any, spec: WorkerSpec) -> list[str] | None:
    """Celery's ``-X``: the queues this worker would consume (``-Q``, else the default queue)
    without the excluded ones; excluding every one is a configuration error, not an idle worker."""
    if not spec.exclude_queues:
        return spec.queues
    from engine.exceptions import ImproperlyConfigured

    left = [q for q in spec.queues or [conf.task_default_queue] if q not in spec.exclude_queues]
    if not left:
        raise ImproperlyConfigured(f"-X {','.join(spec.exclude_queues)} leaves no queue to consume")
    return left


def _purge(app: Any, queues: list[str]) -> None:
    """Celery's ``--purge``: the waiting messages of the queues this worker consumes are deleted
    before it fetches any (in-flight and ETA-parked ones are not touched, as in ``tqctl purge``)."""
    log = logging.getLogger("engine.worker")
    for queue in queues:
        log.warning("purged %d message(s) from %r before starting", app.broker.purge(queue), queue)


@contextmanager
def _pidfile(path: str | None) -> Iterator[None]:
    """Written once this process is the worker (same pid as the command the user ran) and removed
    at exit only by this process: a forked pool child leaving ``serve`` must not delete it."""
    if not path:
        yield
        return
    pid = os.getpid()
    Path(path).write_text(f"{pid}\n")
    try:
        yield
    finally:
        if os.getpid() == pid:
            Path(path).unlink(missing_ok=True)


def _observe(node: object, spec: WorkerSpec) -> Callable[[], None]:
    """``--metrics-port`` and ``--health-file`` (tqctl.observe): attached from outside the worker."""
    if spec.metrics_port is None and not spec.health_file:
        return lambda: None
    from tqctl.observe import attach

    return attach(node, spec.metrics_port, spec.health_file, spec.metrics_address)


def main() -> NoReturn:
    from engine.exceptions import BrokerUnavailable, ImproperlyConfigured
    from tqctl.loader import AppNotFound

    # Read once and drop it, so a task that runs ``tqctl`` in a subprocess gets the normal CLI.
    spec = WorkerSpec(**json.loads(os.environ.pop(SPEC_ENV)))
    try:
        with _pidfile(spec.pidfile):
            code = serve(spec)
    except AppNotFound as exc:
        error_line(str(exc))
        code = EXIT_USAGE
    except (BrokerUnavailable, ImproperlyConfigured) as exc:
        error_line(str(exc))
        code = EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("tqctl: interrupted\n")
        code = 130
    except Exception as exc:  # the last net, as in ``tqctl.cli.main``: one line, never a traceback dump
        error_line(f"{type(exc).__name__}: {exc}")
        code = EXIT_ERROR
    sys.exit(code)
