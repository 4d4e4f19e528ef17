"""``App``: settings, the task registry, and lazily opened broker and backend connections.

The client side of the one-way flow lives here: ``send_task`` encodes a message and hands
it to the broker. Nothing here runs tasks except eager mode.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import os
import socket
import time
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeAlias

from engine import app_clock, app_report, discovery, fixups, publish, shared, signals
from engine.backend import ResultBackend
from engine.backend import connect as connect_backend
from engine.backend.chord import ChordJoin
from engine.broker import Broker
from engine.broker import connect as connect_broker
from engine.broker.connect import AMQP_SCHEMES
from engine.canvas import Signature
from engine.config import Settings, env_backend_url, env_broker_url, state_dir
from engine.control import Control
from engine.events.sent import SentEvents
from engine.exceptions import ImproperlyConfigured, NotRegistered
from engine.log import AppLogging
from engine.protocol import task as protocol
from engine.protocol.template import FIXED, Template, Templates
from engine.redisconn import REDIS_SCHEMES, backend_target, broker_target, guarded
from engine.request import RequestStack
from engine.result import AsyncResult
from engine.routing import route
from engine.signing import Signer
from engine.task import Task, task_from_function
from engine.workflows import register_builtins

# ``App.Task`` and ``App.AsyncResult`` are Celery's names for the app's classes; inside the class
# they shadow the imported ones, so annotations there use these names.
TaskT: TypeAlias = Task
ResultT: TypeAlias = AsyncResult

UTC = dt.timezone.utc
_ORIGINS: dict[int, str] = {}


def _origin() -> str:
    """Celery's ``origin`` header (``gen<pid>@<host>``), looked up once per process, not per send."""
    pid = os.getpid()
    origin = _ORIGINS.get(pid)
    if origin is None:
        origin = _ORIGINS[pid] = f"gen{pid}@{socket.gethostname()}"
    return origin


# Celery's ``Celery(...)`` arguments that configure Celery's own machinery; accepted and ignored.
CELERY_APP_ARGS = (
    "loader",
    "amqp",
    "events",
    "log",
    "control",
    "set_as_current",
    "tasks",
    "changes",
    "fixups",
    "autofinalize",
    "namespace",
)


def _resolve_task_cls(task_cls: Any) -> type[Task]:
    """``task_cls`` as a class or Celery's ``"module:Class"`` string."""
    if task_cls is None:
        return Task
    if isinstance(task_cls, str):
        module, _, attr = task_cls.replace(":", ".").rpartition(".")
        task_cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(task_cls, type) and issubclass(task_cls, Task)):
        raise ImproperlyConfigured(f"task_cls must be an engine Task subclass, not {task_cls!r}")
    return task_cls


class Outgoing(NamedTuple):
    """One encoded task message, ready to publish, and what its after-send steps need."""

    task_id: str
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    priority: int | None
    raw: bytes
    message_options: dict[str, Any]
    hooks: list[publish.Publishing]


class SendPlan(NamedTuple):
    """A send's queue, priority and message options, and its message template (``App._plan``).
    ``message_options`` is shared by every send of the plan: read, never changed."""

    queue: str
    priority: int | None
    message_options: dict[str, Any]
    template: Template


# Call options a plan may hold: none is per message or per call (no id, ETA, expiry, link, header).
PLANNED_OPTIONS = frozenset(
    {
        "queue",
        "priority",
        "routing_key",
        "exchange",
        "serializer",
        "time_limit",
        "soft_time_limit",
        "ignore_result",
        "shadow",
        "retries",
        "reply_to",
    }
)
PLANS = 256


class TaskRegistry(dict):
    def __missing__(self, name: str) -> Task:
        raise NotRegistered(name)


class App:
    def __init__(
        self,
        main: str | None = None,
        broker: str | None = None,
        backend: str | None = None,
        *,
        config_source: Any = None,
        task_cls: Any = None,
        strict_typing: bool = True,
        include: Sequence[str] | None = None,
        **settings: Any,
    ) -> None:
        for name in CELERY_APP_ARGS:  # Celery's constructor arguments that have no meaning here
            settings.pop(name, None)
        self.main = main
        self.strict_typing = strict_typing
        self.conf = Settings(**settings)
        if config_source is not None:
            self.conf.from_object(config_source)
        if broker:
            self.conf.broker_url = broker
        if backend:
            self.conf.result_backend = backend
        if include:
            self.conf.include = [*(self.conf.get("include") or ()), *include]
        self._task_cls = _resolve_task_cls(task_cls)
        self._app_task_cls: type[TaskT] | None = None
        self.tasks = TaskRegistry()
        self.current_requests = RequestStack()
        self._broker: Broker | None = None
        self._backend: ResultBackend | None = None
        self._backend_ready = False
        self._sent_events: SentEvents | None = None
        self._no_event_bus = False  # the broker has none (SQS): known until close()
        self._templates = Templates()  # each task's message serialized once per set of options
        self._plans: dict[tuple[Any, ...], SendPlan] = {}
        self._signer: Signer | None | bool = False  # False: not read from the settings yet
        self.remote_commands: dict[str, Callable[..., Any]] = {}  # app.control_command/inspect_command
        self._pid = os.getpid()
        register_builtins(self)
        shared.register_app(self)
        self._log: AppLogging | None = None
        self._fixups = fixups.install(self)  # Django's, when DJANGO_SETTINGS_MODULE is set (as Celery)

    def __repr__(self) -> str:
        return f"<App {self.main or '__main__'}>"

    def config_from_object(
        self, obj: Any, silent: bool = False, force: bool = False, namespace: str | None = None
    ) -> None:
        """Celery's: a module, ``"module:attr"`` (``"django.conf:settings"``), an object or a dict
        (Flask's ``app.config["CELERY"]``); ``namespace`` takes only ``<NAMESPACE>_*`` names.
        ``silent`` hides an import error, as in Celery."""
        if isinstance(obj, Mapping):
            obj = types.SimpleNamespace(**{str(key): value for key, value in obj.items()})
        try:
            self.conf.from_object(obj, namespace=namespace)
        except ImportError:
            if not silent:
                raise

    def autodiscover_tasks(
        self, packages: discovery.Packages = None, related_name: str | None = "tasks", force: bool = False
    ) -> list[Any] | None:
        """Celery's: import ``<package>.tasks`` for each package (a list, or a callable returning one,
        read late); with none, each installed Django app. Lazy, as in Celery: done when the worker
        imports its task modules (``import_modules``), unless ``force``."""
        if force:
            return discovery.discover(packages, related_name, self._fixups)

        def on_import_modules(**_: Any) -> None:
            discovery.discover(packages, related_name, self._fixups)

        signals.import_modules.connect(on_import_modules, sender=self, weak=False)
        return None

    def set_default(self) -> None:
        """Celery's: make this the app ``shared_task`` and ``current_app`` use (Flask's documented
        ``celery_init_app`` calls it)."""
        shared.make_current(self)

    # -- connections --------------------------------------------------------------------------
    def broker_url(self) -> str:
        """Configured broker, else ``TQCTL_BROKER``, else the bundled server (started if needed)."""
        url = self.conf.broker_url or env_broker_url()
        if not url:
            from engine import bundled

            url = bundled.ensure_running(state_dir(self.conf), self.conf.tqctl_server_path)
            self.conf.broker_url = url
        return broker_target(url, self.conf)

    def backend_url(self) -> str | None:
        url = self.conf.result_backend or env_backend_url()
        if url:
            return backend_target(url, self.conf)
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
            url = self.backend_url()
            broker = self.broker_url() if url and str(url).lower().startswith("rpc://") else None
            self._backend = connect_backend(url, self.conf.result_expires, broker_url=broker, app=self)
            self._backend_ready = True
        return self._backend

    def chord_join(self) -> ChordJoin:
        backend = self.backend
        client = getattr(backend, "client", None)
        if client is None:
            raise ImproperlyConfigured("chords need a Redis result backend")
        own = getattr(backend, "chord_join", None)  # the backend's own chord settings (expiry, ordering)
        return own() if own is not None else ChordJoin(client, int(self.conf.result_expires or 86400))

    @property
    def sent_events(self) -> SentEvents | None:
        """Where ``task-sent`` events go (None when turned off or the broker has no event bus)."""
        if not self.conf.task_send_sent_event:
            return None
        if self._sent_events is None:
            if self._no_event_bus:  # not the broker URL worked out again on every send (~10 µs)
                return None
            url = self.broker_url()
            if url.split("://", 1)[0].lower() not in (*REDIS_SCHEMES, *AMQP_SCHEMES):
                self._no_event_bus = True  # SQS has no event bus
                return None
            self._sent_events = SentEvents(url)
        return self._sent_events

    @property
    def signer(self) -> Signer | None:
        """Signs what this app publishes (tqctl_signing_keys / tqctl_signing_key_id); None when off."""
        if self._signer is False:
            self._signer = Signer.from_conf(self.conf)
        return self._signer  # type: ignore[return-value]

    @property
    def timezone(self) -> dt.tzinfo:
        """The ``timezone`` setting as a ``tzinfo`` (Celery's ``app.timezone``)."""
        return app_clock.app_timezone(self.conf)

    def now(self) -> dt.datetime:
        """Now, in the app's time zone: the clock beat reads (Celery's ``app.now()``)."""
        return app_clock.app_now(self.conf)

    def bugreport(self) -> str:
        """Celery's ``app.bugreport()``: versions, platform and settings, passwords masked."""
        return app_report.bugreport(self)

    @property
    def log(self) -> AppLogging:
        """Celery's ``app.log``: ``app.log.setup_logging_subsystem(loglevel=, logfile=, hostname=)``."""
        if self._log is None:
            self._log = AppLogging(self)
        return self._log

    @property
    def control(self) -> Control:
        """Celery's ``app.control``: on the broker's own broadcast channels (Redis pub/sub, or
        RabbitMQ's ``celery.pidbox``), so ``result.revoke()`` and ``inspect()`` work on either."""
        from engine.broker.inspect import open_fanout

        url = self.broker_url()
        return Control(url, signer=self.signer, fanout=open_fanout(url, self.backend_url()))

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
        self._no_event_bus = False
        for conn in (self._broker, self._backend):
            if conn is not None:
                conn.close()
        self._broker, self._backend, self._backend_ready = None, None, False

    # -- tasks --------------------------------------------------------------------------------
    @property
    def Task(self) -> type[Task]:  # noqa: N802 - Celery's name: ``class MyTask(app.Task)``
        """The base task class bound to this app (``task_cls`` if given), made once per app."""
        if self._app_task_cls is None:
            base = self._task_cls
            self._app_task_cls = type(
                base.__name__, (base,), {"_app": self, "__module__": base.__module__, "__qualname__": base.__qualname__}
            )
        return self._app_task_cls

    def task(self, *args: Any, **options: Any) -> Any:
        """``@app.task`` or ``@app.task(bind=True, ...)``: register a function as a task."""
        if len(args) == 1 and callable(args[0]) and not options:
            return self._register(args[0], {})
        if args:
            raise TypeError("@app.task takes keyword options only, or the function itself")

        def decorate(fun: Callable[..., Any]) -> TaskT:
            return self._register(fun, options)

        return decorate

    def _register(self, fun: Callable[..., Any], options: dict[str, Any]) -> TaskT:
        opts = dict(options)
        for ignored in ("shared", "lazy", "filter"):
            opts.pop(ignored, None)
        name = opts.pop("name", None) or self.default_name(fun)
        bind = bool(opts.pop("bind", False))
        base = opts.pop("base", None) or self.Task
        if not (isinstance(base, type) and issubclass(base, Task)):
            raise TypeError(f"base= must be a Task subclass, not {base!r}")
        task = task_from_function(self, fun, name, base, bind, opts)
        self.tasks[name] = task
        self._annotate(task)
        return task

    def register_task(self, task: TaskT | type[TaskT], **options: Any) -> TaskT:
        """Register a class-based task (``class X(app.Task)`` with ``run``): Celery does not do it for you."""
        instance = task() if isinstance(task, type) else task
        for key, value in options.items():
            setattr(instance, key, value)
        if not instance.name:
            cls = type(instance)
            instance.name = self.gen_task_name(cls.__name__, cls.__module__)
        instance._app = self
        self.tasks[instance.name] = instance
        self._annotate(instance)
        return instance

    def _annotate(self, task: TaskT) -> None:
        """``task_annotations``: attributes set on tasks from the settings (Celery's forms: a dict by
        task name or ``"*"``, an object with ``annotate(task)``, or a list of those)."""
        found = self.conf.get("task_annotations")
        for item in found if isinstance(found, (list, tuple)) else [found] if found else []:
            if isinstance(item, str):
                module, _, attr = item.replace(":", ".").rpartition(".")
                item = getattr(importlib.import_module(module), attr)
            if isinstance(item, dict):
                values = {**(item.get("*") or {}), **(item.get(task.name) or {})}
            else:
                values = getattr(item, "annotate", lambda _task: None)(task) or {}
            for key, value in values.items():
                if key.startswith("@"):
                    continue  # Celery's around-method annotations wrap methods; not supported here
                setattr(task, key, value)

    def apply_annotations(self) -> None:
        """Annotate every task again: the worker calls it at start, after the settings are final."""
        for task in list(self.tasks.values()):
            self._annotate(task)

    def gen_task_name(self, name: str, module: str) -> str:
        if module == "__main__" and self.main:
            module = self.main
        return f"{module}.{name}"

    def import_default_modules(self) -> list[Any]:
        """Import the ``imports`` and ``include`` settings' modules (the worker does, at start), after
        telling ``import_modules`` receivers, as Celery's loader does."""
        signals.import_modules.send(sender=self)
        names = [*(self.conf.get("imports") or ()), *(self.conf.get("include") or ())]
        modules = [importlib.import_module(name) for name in dict.fromkeys(names)]
        self.apply_annotations()
        return modules

    def default_name(self, fun: Callable[..., Any]) -> str:
        return self.gen_task_name(fun.__name__, getattr(fun, "__module__", None) or "__main__")

    def AsyncResult(self, task_id: str, task_name: str | None = None) -> AsyncResult:  # noqa: N802
        return AsyncResult(task_id, self, task_name=task_name)

    def signature(
        self, name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Signature:
        return Signature(name, args, kwargs, options=options, app=self)

    # -- sending ------------------------------------------------------------------------------
    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        task: TaskT | None = None,
        **options: Any,
    ) -> ResultT:
        """Encode and publish one task message; the returned handle reads its result."""
        out = self._prepare_send(name, args, kwargs, task, options)
        self._watch_result(out)
        broker = self.broker
        sent_at = time.time()  # task-sent's time: before the publish, so never after the task starts
        guarded(broker.url, lambda: broker.publish(out.queue, out.raw, out.priority))
        return self._after_send(out, sent_at)

    def _prepare_send(
        self,
        name: str,
        args: Sequence[Any] | None,
        kwargs: dict[str, Any] | None,
        task: TaskT | None,
        options: dict[str, Any],
    ) -> Outgoing:
        """Everything ``send_task`` does before the publish; ``engine.aio.asend_task`` shares it so
        the sync and asyncio paths build the same message."""
        task = task if task is not None else self.tasks.get(name)
        args, kwargs = list(args or ()), dict(kwargs or {})
        options = {k: v for k, v in options.items() if v is not None}
        stack = self.current_requests.stack
        plan = None if stack else self._plan(name, task, options)
        if plan is not None:
            queue, priority, message_options, template = plan
            task_id, raw = template.fill(args, kwargs)
        else:
            if stack and self.conf.get("task_inherit_parent_priority"):
                parent_priority = (stack[-1].delivery_info or {}).get("priority")
                if parent_priority is not None:
                    options.setdefault("priority", parent_priority)
            queue, priority, routed = self._destination(name, task, args, kwargs, options)
            message_options = self._message_options(task, options, routed)
            task_id, raw = self._templates.build(name, args, kwargs, queue, priority, message_options)
        hooks: list[publish.Publishing] = []
        if publish.hooks_connected() or self.signer is not None:
            (raw,), hooks = self._outgoing(
                name, [raw], message_options["exchange"], message_options["routing_key"] or queue
            )
        return Outgoing(task_id, name, args, kwargs, queue, priority, raw, message_options, hooks)

    def _plan(self, name: str, task: TaskT | None, options: dict[str, Any]) -> SendPlan | None:
        """Where a send outside a task goes and its message options, worked out once per task and
        set of options: a plain ``delay()`` then costs a lookup and a template fill. The key holds
        every value the two depend on, read now, so a setting or task attribute changed later
        makes a new plan. None (work it out per call) for what varies per call: task routes (a
        router sees the arguments), per-message options (an id, an ETA, links, headers)."""
        conf = self.conf
        if not options.keys() <= PLANNED_OPTIONS or conf.get("task_routes"):
            return None
        own = (
            (
                task,
                task.queue,
                task.priority,
                task.time_limit,
                task.soft_time_limit,
                task.ignore_result,
                task.serializer,
            )
            if task is not None
            else None
        )
        key = (
            name,
            own,
            *options.items(),
            conf.get("task_default_queue"),
            conf.get("task_default_priority"),
            conf.get("task_ignore_result"),
            conf.get("task_serializer"),
            self._reply_to(),
            _origin(),
        )
        try:
            plan = self._plans.get(key)
        except TypeError:  # an unhashable value (a kombu Queue, a list): no plan
            return None
        if plan is None:
            queue, priority, routed = self._destination(name, task, [], {}, options)
            message_options = self._message_options(task, options, routed)
            fixed = {k: message_options[k] for k in FIXED if k in message_options}
            template = Template(name, queue=queue, priority=priority, **fixed)
            if len(self._plans) >= PLANS:
                self._plans.clear()
            plan = self._plans[key] = SendPlan(queue, priority, message_options, template)
        return plan

    def _watch_result(self, out: Outgoing) -> None:
        """As Celery's client (``backend.on_task_call``): listen for the result before the message
        goes, unless it is not stored or this is a task sending from a worker (nobody waits there)."""
        if out.message_options["ignore_result"] or self.current_requests.stack:
            return
        on_task_call = getattr(self.backend, "on_task_call", None)
        if on_task_call is not None:
            on_task_call(None, out.task_id)

    def _after_send(self, out: Outgoing, sent_at: float) -> ResultT:
        """What follows a publish (hooks' ``after``, the task-sent event), for both send paths."""
        for hook in out.hooks:
            hook.after()
        sent = self.sent_events
        if sent is not None:
            sent.record(out.task_id, out.name, out.args, out.kwargs, out.queue, out.message_options, sent_at)
        result = AsyncResult(out.task_id, self, task_name=out.name)
        result.ignored = bool(out.message_options["ignore_result"])
        return result

    def send_many(
        self,
        name: str,
        calls: Sequence[tuple[Sequence[Any], dict[str, Any] | None]],
        *,
        task: TaskT | None = None,
        **options: Any,
    ) -> list[ResultT]:
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
        raws, hooks = self._outgoing(
            name, [raw for _, raw in built], message_options["exchange"], message_options["routing_key"] or queue
        )
        built = [(task_id, raw) for (task_id, _), raw in zip(built, raws, strict=True)]
        sent_at = time.time()
        guarded(self.broker.url, lambda: self.broker.publish_many([(queue, raw, priority) for _, raw in built]))
        for hook in hooks:
            hook.after()
        sent = self.sent_events
        if sent is not None:
            sent.record_many(
                name,
                (
                    (task_id, args or (), kwargs or {})
                    for (task_id, _), (args, kwargs) in zip(built, calls, strict=True)
                ),
                queue,
                message_options,
                sent_at,
            )
        return [AsyncResult(task_id, self, task_name=name) for task_id, _ in built]

    def _outgoing(
        self, name: str, raws: list[bytes], exchange: str, routing_key: str
    ) -> tuple[list[bytes], list[publish.Publishing]]:
        """The messages as they leave: the publish signals' receivers first, then signing, so
        what a receiver adds to the headers is signed too. Costs nothing when neither is on."""
        hooks: list[publish.Publishing] = []
        if publish.hooks_connected():
            hooks = [publish.Publishing(name, raw, exchange, routing_key) for raw in raws]
            raws = [hook.before() for hook in hooks]
        signer = self.signer
        if signer is not None:
            raws = [signer.sign(raw) for raw in raws]
        return raws, hooks

    def _destination(
        self, name: str, task: TaskT | None, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]
    ) -> tuple[str, int | None, dict[str, Any]]:
        """(queue, priority, the matching route) by Celery's precedence: the call's options, then
        the task's own, then ``task_routes``, then the defaults."""
        conf = self.conf
        routes = conf.task_routes
        routed = route(routes, name, args, kwargs, options) if routes else {}
        get = options.get
        queue: Any = get("queue") or (task.queue if task is not None else None) or routed.get("queue")
        queue = queue or conf.task_default_queue
        priority = get("priority")
        if priority is None and task is not None:
            priority = task.priority
        if priority is None:
            priority = routed.get("priority")
        if priority is None:
            priority = conf.task_default_priority
        return str(getattr(queue, "name", queue)), priority, routed

    def _message_options(self, task: TaskT | None, options: dict[str, Any], routed: dict[str, Any]) -> dict[str, Any]:
        stack = self.current_requests.stack
        current = stack[-1] if stack else None
        get = options.get
        parent_id = get("parent_id") or (current.id if current else None)
        root_id = get("root_id") or (current.root_id if current else None)
        if task is not None:
            hard, soft = get("time_limit", task.time_limit), get("soft_time_limit", task.soft_time_limit)
            ignore = get("ignore_result")
            if ignore is None:
                own = task.ignore_result
                ignore = bool(self.conf.task_ignore_result if own is None else own)
            serializer = get("serializer") or task.serializer
        else:
            hard, soft = get("time_limit"), get("soft_time_limit")
            ignore = get("ignore_result")
            if ignore is None:
                ignore = bool(self.conf.task_ignore_result)
            serializer = get("serializer")
        headers = dict(get("headers") or {})
        stamped = get("stamped_headers")
        if stamped:  # Celery 5.7's wire shape: the names, and their values under ``stamps``
            stamped = [stamped] if isinstance(stamped, str) else list(stamped)
            headers["stamped_headers"] = stamped
            headers["stamps"] = {key: get(key) for key in stamped}
        return {
            "task_id": get("task_id"),
            "routing_key": get("routing_key") or routed.get("routing_key"),
            "exchange": get("exchange") or routed.get("exchange") or "",
            "eta": self._eta(options) if "countdown" in options or "eta" in options else None,
            "expires": self._expires(get("expires")),
            "retries": int(get("retries") or 0),
            "root_id": root_id,
            "parent_id": parent_id,
            "group": get("group_id"),
            "group_index": get("group_index"),
            "timelimit": (hard, soft),
            "ignore_result": ignore,
            "headers": headers or None,
            "embed": _embed(options),
            "serializer": serializer or self.conf.task_serializer,
            "shadow": get("shadow"),
            "origin": _origin(),
            "reply_to": get("reply_to") or self._reply_to(),
            "properties": {k: options[k] for k in protocol.MESSAGE_PROPERTIES if k in options} or None,
        }

    def _reply_to(self) -> str:
        """``rpc://`` results: the client's reply queue (consumed before the task naming it is
        sent); other backends leave it empty, as before."""
        if not self._backend_ready:
            url = self.conf.get("result_backend") or env_backend_url()
            if not url or str(url)[:6].lower() != "rpc://":
                return ""
        reply_to = getattr(self.backend, "reply_to", None)
        return str(reply_to()) if callable(reply_to) else ""

    def _eta(self, options: dict[str, Any]) -> dt.datetime | None:
        if options.get("countdown") is not None:
            return dt.datetime.now(UTC) + dt.timedelta(seconds=float(options["countdown"]))
        eta = options.get("eta")
        if eta is None:
            return None
        if isinstance(eta, str):
            eta = protocol.parse_time(eta)
            if eta is None:  # an empty string: no ETA
                return None
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
