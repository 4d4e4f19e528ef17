"""Task logging as Celery's: ``get_task_logger(__name__)``, and log lines that carry the task's name and id.

Task loggers hang under ``celery.task`` (Celery's name, so a logging config written for Celery
applies unchanged), which the worker gives a handler with ``worker_task_log_format``.
Which task is running is kept in a context variable (one per thread), set by ``engine.trace``
for the length of a run: the formatter reads it, as Celery's reads its task stack. That variable
is process state by nature, like the logging module's own registry of loggers.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from engine import signals
from engine.utils.nodenames import node_format

if TYPE_CHECKING:
    from engine.app import App
    from engine.request import Request
    from engine.task import Task

TASK_LOGGER = "celery.task"
RESERVED = frozenset({"celery", TASK_LOGGER})
WORKER_LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
WORKER_TASK_LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s"

_running: contextvars.ContextVar[tuple[Task, Request] | None] = contextvars.ContextVar("engine_task", default=None)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def get_task_logger(name: str) -> logging.Logger:
    """A logger whose records go through the task handler (task name and id in every line)."""
    if name in RESERVED:
        raise RuntimeError(f"Logger name {name!r} is reserved!")
    logger = logging.getLogger(name)
    if not name.startswith(TASK_LOGGER + "."):  # Celery re-parents it under celery.task, whatever its name
        logger.parent = logging.getLogger(TASK_LOGGER)
    return logger


@contextmanager
def running(task: Task, request: Request) -> Iterator[None]:
    token = enter(task, request)
    try:
        yield
    finally:
        leave(token)


def enter(task: Task, request: Request) -> contextvars.Token[tuple[Task, Request] | None]:
    """Mark ``task`` as running in this thread (``engine.trace`` calls it around each run)."""
    return _running.set((task, request))


def leave(token: contextvars.Token[tuple[Task, Request] | None]) -> None:
    _running.reset(token)


def running_request() -> Request | None:
    """The request of the task running in this thread (``rpc://`` replies to its ``reply_to``)."""
    found = _running.get()
    return found[1] if found else None


def current_task() -> Task | None:
    found = _running.get()
    return found[0] if found else None


class TaskFormatter(logging.Formatter):
    """Fills ``%(task_name)s`` and ``%(task_id)s`` from the running task (``???`` outside one)."""

    def format(self, record: logging.LogRecord) -> str:
        found = _running.get()
        if found is not None:
            task, request = found
            record.__dict__.setdefault("task_name", task.name)
            record.__dict__.setdefault("task_id", request.id)
        else:
            record.__dict__.setdefault("task_name", "???")
            record.__dict__.setdefault("task_id", "???")
        return super().format(record)


def setup_worker_logging(app: App, loglevel: str | int, logfile: str | None = None, format: str | None = None) -> None:
    """The worker's logging, as Celery's worker sets it up: a ``setup_logging`` receiver takes over
    completely; otherwise the root logger gets ``worker_log_format`` (replacing its handlers when
    ``worker_hijack_root_logger``), ``celery.task`` gets ``worker_task_log_format``, and the
    ``after_setup_logger``/``after_setup_task_logger`` receivers are told."""
    level = logging.getLevelName(loglevel.upper()) if isinstance(loglevel, str) else loglevel
    conf = app.conf
    fmt = format or conf.get("worker_log_format") or WORKER_LOG_FORMAT
    task_fmt = conf.get("worker_task_log_format") or WORKER_TASK_LOG_FORMAT
    answered = signals.setup_logging.send(sender=None, loglevel=level, logfile=logfile, format=fmt, colorize=False)
    if answered:
        return
    root = logging.getLogger()
    if conf.get("worker_hijack_root_logger", True):
        root.handlers = []
    _add_handler(root, logfile, logging.Formatter(fmt))
    root.setLevel(level)
    signals.after_setup_logger.send(
        sender=None, logger=root, loglevel=level, logfile=logfile, format=fmt, colorize=False
    )
    task_logger = logging.getLogger(TASK_LOGGER)
    task_logger.handlers = []
    _add_handler(task_logger, logfile, TaskFormatter(task_fmt))
    task_logger.setLevel(level)
    task_logger.propagate = False
    signals.after_setup_task_logger.send(
        sender=None, logger=task_logger, loglevel=level, logfile=logfile, format=task_fmt, colorize=False
    )


def _add_handler(logger: logging.Logger, logfile: str | None, formatter: logging.Formatter) -> None:
    handler: logging.Handler = logging.FileHandler(logfile) if logfile else logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    logger.addHandler(handler)


class AppLogging:
    """``app.log``: what Celery's ``app.log.setup_logging_subsystem(...)`` does for a program that
    is not a worker (a beat, a script) but wants the worker's log layout, in a file named as the
    worker's ``--logfile`` would be (``%n``, ``%h``, ``%i``, ``%%`` expanded for ``hostname``)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.already_setup = False

    def setup_logging_subsystem(
        self,
        loglevel: str | int | None = None,
        logfile: str | None = None,
        format: str | None = None,
        colorize: bool | None = None,
        hostname: str | None = None,
        **_: object,
    ) -> None:
        """Once per app: later calls keep the first set-up (Celery's ``already_setup``)."""
        if self.already_setup:
            return
        if logfile and hostname:
            logfile = node_format(logfile, hostname)
        setup_worker_logging(self.app, loglevel or logging.WARNING, logfile, format)
        self.already_setup = True

    def get_default_logger(self, name: str = "celery") -> logging.Logger:
        return logging.getLogger(name)
