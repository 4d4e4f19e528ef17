"""``App``: settings, the task registry, and lazily opened broker and backend connections.

The client side of the one-way flow lives here: ``send_task`` encodes a message and hands
it to the broker. Nothing here runs tasks except eager mode.
"""

from __future__ import annotations

import datetime as dt
import inspect
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from engine import shared
from engine.backend import ResultBackend
from engine.backend import connect as connect_backend
from engine.backend.chord import ChordJoin
from engine.broker import Broker
from engine.broker import connect as connect_broker
from engine.canvas import Signature
from engine.config import Settings, env_backend_url, env_broker_url, state_dir
from engine.control import Control
from engine.events.sent import SentEvents
from engine.exceptions import ImproperlyConfigured, NotRegistered
from engine.protocol import task as protocol
from engine.redisconn import REDIS_SCHEMES, guarded
from engine.request import RequestStack
from engine.result import AsyncResult
from engine.routing import route
from engine.task import Task
from engine.workflows import register_builtins

UTC = dt.timezone.utc
_ORIGINS: dict[int, str] = {}


def _origin() -> str:
    """Celery's ``origin`` header (``gen<pid>@<host>``), looked up once per process, not per send."""
    pid = os.getpid()
    origin = _ORIGINS.get(pid)
    if origin is None:
        origin = _ORIGINS[pid] = f"gen{pid}@{socket.gethostname()}"
    return origin


class TaskRegistry(dict):
    def __missing__(self, name: str) -> Task:
        raise NotRegistered(name)


class App:
    def __init__(self, main: str | None = None, broker: str | None = None,
                 backend: str | None = None, *, config_source: Any = None,
                 **settings: Any) -> None:
        self.main = main
        self.conf = Settings(**settings)
        if config_source is not None:
            self.conf.from_object(config_source)
        if broker:
            self.conf.broker_url = broker
        if backend:
            self.conf.result_backend = backend
        self.tasks = TaskRegistry()
        self.current_requests = RequestStack()
        self._broker: Broker | None = None
        self._backend: ResultBackend | None = None
        self._backend_ready = False
        self._sent_events: SentEvents | None = None
        self.remote_commands: dict[str, Callable[..., Any]] = {}  # app.control_command/inspect_command
        self._pid = os.getpid()
        register_builtins(self)
        shared.register_app(self)

    def __repr__(self) -> str:
        return f"<App {self.main or '__main__'}>"

    def config_from_object(self, obj: Any) -> None:
        self.conf.from_object(obj)

    # -- connections --------------------------------------------------------------------------
    def broker_url(self) -> str:
        """Configured broker, else ``TQCTL_BROKER``, else the bundled server (started if needed)."""
        url = self.conf.broker_url or env_broker_url()
        if not url:
            from engine import bundled

            url = bundled.ensure_running(state_dir(self.conf), self.conf.tqctl_server_path)
            self.conf.broker_url = url
        return url

    def backend_url(self) -> str | None:
        url = self.conf.result_backend or env_backend_url()
        if url:
            return url
        broker = self.broker_url()
        scheme = broker.split("://", 1)[0].lower()
        return broker if scheme in REDIS_SCHEMES else None

    def _check_fork(self) -> None:
        """A forked child must not share its parent's sockets: reopen lazily."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._broker = None
            self._backend = None
            self._backend_ready = False

    @property
    def broker(self) -> Broker:
        self._check_fork()
        if self._broker is None:
            self._broker = connect_broker(self.broker_url())
        return self._broker

    @property
    def backend(self) -> ResultBackend | None:
        self._check_fork()
        if not self._backend_ready:
            self._backend = connect_backend(self.backend_url(), self.conf.result_expires)
            self._backend_ready = True
        return self._backend

    def chord_join(self) -> ChordJoin:
        backend = self.backend
        client = getattr(backend, "client", None)
        if client is None:
            raise ImproperlyConfigured("chords need a Redis result backend")
        return ChordJoin(client, int(self.conf.result_expires or 86400))

    @property
    def sent_events(self) -> SentEvents | None:
        """Where ``task-sent`` events go (None when turned off or the broker has no event bus)."""
        if not self.conf.task_send_sent_event:
            return None
        if self._sent_events is None:
            url = self.broker_url()
            if url.split("://", 1)[0].lower() not in REDIS_SCHEMES:
                return None
            self._sent_events = SentEvents(url)
        return self._sent_events

    @property
    def control(self) -> Control:
        return Control(self.broker_url())

    def control_command(self, name: str | None = None, **options: Any) -> Callable[..., Any]:
        """Celery's ``@control_command``, kept by this app only (see engine.worker.control)."""
        from engine.worker.control import register_on

        return register_on(self, "control", name, options)

    def inspect_command(self, name: str | None = None, **options: Any) -> Callable[..., Any]:
        """Celery's ``@inspect_command``, kept by this app only (see engine.worker.control)."""
        from engine.worker.control import register_on

        return register_on(self, "inspect", name, options)

    def close(self) -> None:
        if self._sent_events is not None:
            self._sent_events.close()
            self._sent_events = None
        for conn in (self._broker, self._backend):
            if conn is not None:
                conn.close()
        self._broker, self._backend, self._backend_ready = None, None, False

    # -- tasks --------------------------------------------------------------------------------
    def task(self, *args: Any, **options: Any) -> Any:
        """``@app.task`` or ``@app.task(bind=True, ...)``: register a function as a task."""
        if len(args) == 1 and callable(args[0]) and not options:
            return self._register(args[0], {})

        def decorate(fun: Callable[..., Any]) -> Task:
            return self._register(fun, options)

        return decorate

    def _register(self, fun: Callable[..., Any], options: dict[str, Any]) -> Task:
        opts = dict(options)
        opts.pop("shared", None)
        name = opts.pop("name", None) or self.default_name(fun)
        bind = bool(opts.pop("bind", False))
        base = opts.pop("base", None) or Task
        task = base(self, fun, name, bind=bind, **opts)
        self.tasks[name] = task
        return task

    def default_name(self, fun: Callable[..., Any]) -> str:
        module = getattr(fun, "__module__", None) or "__main__"
        if module == "__main__" and self.main:
            module = self.main
        return f"{module}.{fun.__name__}"

    def AsyncResult(self, task_id: str, task_name: str | None = None) -> AsyncResult:  # noqa: N802
        return AsyncResult(task_id, self, task_name=task_name)

    def signature(self, name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                  **options: Any) -> Signature:
        return Signature(name, args, kwargs, options=options, app=self)

    # -- sending ------------------------------------------------------------------------------
    def send_task(self, name: str, args: Sequence[Any] | None = None,
                  kwargs: dict[str, Any] | None = None, *, task: Task | None = None,
                  **options: Any) -> AsyncResult:
        """Encode and publish one task message; the returned handle reads its result."""
        task = task if task is not None else self.tasks.get(name)
        args, kwargs = list(args or ()), dict(kwargs or {})
        options = {k: v for k, v in options.items() if v is not None}
        queue, priority, routed = self._destination(name, task, args, kwargs, options)
        message_options = self._message_options(task, options, routed)
        task_id, raw = protocol.build(name, args, kwargs, queue=queue, priority=priority, **message_options)
        sent_at = time.time()  # task-sent's time: before the publish, so never after the task starts
        guarded(self.broker.url, lambda: self.broker.publish(queue, raw, priority))
        sent = self.sent_events
        if sent is not None:
            sent.record(task_id, name, args, kwargs, queue, message_options, sent_at)
        return AsyncResult(task_id, self, task_name=name)

    def send_many(self, name: str, calls: Sequence[tuple[Sequence[Any], dict[str, Any] | None]], *,
                  task: Task | None = None, **options: Any) -> list[AsyncResult]:
        """Bulk ``send_task``: one message per ``(args, kwargs)`` with the same options, all
        published in one round trip (``protocol.build_many`` + ``broker.publish_many``).

        Routing is decided once, from the first call's arguments.
        """
        if not calls:
            return []
        task = task if task is not None else self.tasks.get(name)
        options = {k: v for k, v in options.items() if v is not None}
        args0, kwargs0 = list(calls[0][0] or ()), dict(calls[0][1] or {})
        queue, priority, routed = self._destination(name, task, args0, kwargs0, options)
        message_options = self._message_options(task, options, routed)
        message_options.pop("task_id", None)
        built = protocol.build_many(name, calls, queue=queue, priority=priority, **message_options)
        sent_at = time.time()
        guarded(self.broker.url, lambda: self.broker.publish_many([(queue, raw, priority) for _, raw in built]))
        sent = self.sent_events
        if sent is not None:
            sent.record_many(name, ((task_id, args or (), kwargs or {})
                                    for (task_id, _), (args, kwargs) in zip(built, calls, strict=True)),
                             queue, message_options, sent_at)
        return [AsyncResult(task_id, self, task_name=name) for task_id, _ in built]

    def _destination(self, name: str, task: Task | None, args: list[Any], kwargs: dict[str, Any],
                     options: dict[str, Any]) -> tuple[str, int | None, dict[str, Any]]:
        """(queue, priority, the matching route) by Celery's precedence: the call's options, then
        the task's own, then ``task_routes``, then the defaults."""
        own = {"queue": task.queue, "priority": task.priority} if task is not None else {}
        routed = route(self.conf.task_routes, name, args, kwargs, options)
        queue = (options.get("queue") or own.get("queue") or routed.get("queue")
                 or self.conf.task_default_queue)
        priority = next((p for p in (options.get("priority"), own.get("priority"), routed.get("priority"))
                         if p is not None), self.conf.task_default_priority)
        return getattr(queue, "name", queue), priority, routed

    def _message_options(self, task: Task | None, options: dict[str, Any],
                         routed: dict[str, Any]) -> dict[str, Any]:
        current = self.current_requests.stack[-1] if self.current_requests.stack else None
        parent_id = options.get("parent_id") or (current.id if current else None)
        root_id = options.get("root_id") or (current.root_id if current else None)
        hard = options.get("time_limit", task.time_limit if task else None)
        soft = options.get("soft_time_limit", task.soft_time_limit if task else None)
        ignore = options.get("ignore_result")
        if ignore is None:
            ignore = bool(task.opt("ignore_result", "task_ignore_result") if task
                          else self.conf.task_ignore_result)
        serializer = options.get("serializer") or (task.serializer if task else None)
        return {
            "task_id": options.get("task_id"),
            "routing_key": options.get("routing_key") or routed.get("routing_key"),
            "exchange": options.get("exchange") or routed.get("exchange") or "",
            "eta": self._eta(options),
            "expires": self._expires(options.get("expires")),
            "retries": int(options.get("retries") or 0),
            "root_id": root_id,
            "parent_id": parent_id,
            "group": options.get("group_id"),
            "group_index": options.get("group_index"),
            "timelimit": (hard, soft),
            "ignore_result": ignore,
            "headers": options.get("headers"),
            "embed": _embed(options),
            "serializer": serializer or self.conf.task_serializer,
            "shadow": options.get("shadow"),
            "origin": _origin(),
        }

    def _eta(self, options: dict[str, Any]) -> dt.datetime | None:
        if options.get("countdown") is not None:
            return dt.datetime.now(UTC) + dt.timedelta(seconds=float(options["countdown"]))
        eta = options.get("eta")
        if eta is None:
            return None
        if isinstance(eta, str):
            eta = protocol.parse_time(eta)
        return eta if eta.tzinfo else eta.replace(tzinfo=UTC if self.conf.enable_utc else None)

    def _expires(self, expires: Any) -> dt.datetime | None:
        if expires is None:
            return None
        if isinstance(expires, (int, float)):
            return dt.datetime.now(UTC) + dt.timedelta(seconds=float(expires))
        if isinstance(expires, str):
            return protocol.parse_time(expires)
        return expires if expires.tzinfo else expires.replace(tzinfo=UTC)


def _embed(options: dict[str, Any]) -> dict[str, Any] | None:
    link, errs = options.get("link"), options.get("link_error")
    chain, chord = options.get("chain"), options.get("chord")
    if not (link or errs or chain or chord):
        return None
    return {
        "callbacks": _sig_list(link),
        "errbacks": _sig_list(errs),
        "chain": [dict(s) for s in chain] if chain else None,
        "chord": dict(chord) if chord else None,
    }


def _sig_list(value: Any) -> list[dict[str, Any]] | None:
    if not value:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    return [dict(item) for item in items]


def is_task_function(obj: Any) -> bool:
    return isinstance(obj, Task) or (inspect.isfunction(obj) and hasattr(obj, "__wrapped__"))
