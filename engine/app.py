"""``App``: settings, the task registry, and lazily opened broker and backend connections.

The client side of the one-way flow starts here: ``send_task`` hands a call to the app's
``Sender`` (engine.sending), which encodes the message and publishes it. Nothing here runs
tasks except eager mode.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

from engine import app_clock, app_lifecycle, app_report, discovery, fixups, forks, shared, signals
from engine.backend import ResultBackend
from engine.backend import connect as connect_backend
from engine.backend.chord import ChordJoin
from engine.broker import Broker
from engine.broker import connect as connect_broker
from engine.broker.connect import AMQP_SCHEMES
from engine.canvas import Signature
from engine.config import Settings, env_backend_url, env_broker_url, seconds_setting, state_dir
from engine.control import Control
from engine.events.sent import SentEvents
from engine.exceptions import BrokerUnavailable, ImproperlyConfigured, NotRegistered
from engine.log import AppLogging
from engine.redisconn import REDIS_SCHEMES, backend_target, broker_target
from engine.request import RequestStack
from engine.result import AsyncResult
from engine.sending import Outgoing, Sender
from engine.signing import Signer
from engine.task import Task, task_from_function
from engine.workflows import register_builtins

# ``App.Task`` and ``App.AsyncResult`` are Celery's names for the app's classes; inside the class
# they shadow the imported ones, so annotations there use these names.
TaskT: TypeAlias = Task
ResultT: TypeAlias = AsyncResult


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
        self._sending = Sender(self)  # the send path, its plans and message templates
        self._signer: Signer | None | bool = False  # False: not read from the settings yet
        self.remote_commands: dict[str, Callable[..., Any]] = {}  # app.control_command/inspect_command
        self._pid = forks.pid
        self._lifecycle = app_lifecycle.Lifecycle()
        self._kombu_pool: Any = None
        self._group_result_cls: type[Any] | None = None
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

    def config_from_envvar(self, variable_name: str, silent: bool = False, force: bool = False) -> None:
        """Celery's: ``config_from_object`` of the module the environment variable names."""
        import os

        module_name = os.environ.get(variable_name)
        if not module_name:
            if silent:
                return
            raise ImproperlyConfigured(
                f"The environment variable {variable_name!r} is not set,"
                " and as such the configuration could not be loaded."
            )
        self.config_from_object(module_name, silent=silent, force=force)

    @property
    def current_task(self) -> Any:
        """The task running in this thread (None outside one), as Celery's ``app.current_task``."""
        from engine.log import current_task

        return current_task()

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
        if self._pid != forks.pid:
            self._pid = forks.pid
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
            expires = seconds_setting(self.conf.result_expires)
            self._backend = connect_backend(url, expires, broker_url=broker, app=self)
            self._backend_ready = True
        return self._backend

    def chord_join(self) -> ChordJoin:
        backend = self.backend
        client = getattr(backend, "client", None)
        if client is None:
            raise ImproperlyConfigured("chords need a Redis result backend")
        own = getattr(backend, "chord_join", None)  # the backend's own chord settings (expiry, ordering)
        return own() if own is not None else ChordJoin(client, int(seconds_setting(self.conf.result_expires) or 86400))

    @property
    def sent_events(self) -> SentEvents | None:
        """Where ``task-sent`` events go (None when turned off or the broker has no event bus).

        Read on every send: ``conf.get`` is a dict read, where the attribute goes through
        ``Settings.__getattr__`` after a failed lookup (about 0.4 us). The setting is in the
        engine's defaults, and Celery's default (False) reads as falsy as ``get``'s None."""
        if not self.conf.get("task_send_sent_event"):
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
        pool, self._kombu_pool = self._kombu_pool, None
        if pool is not None:
            pool.force_close_all()

    # -- kombu connections, for code that talks to the broker through kombu itself ----------------
    def connection_for_write(self, url: str | None = None, **kwargs: Any) -> Any:
        """Celery's: a kombu ``Connection`` to the broker. Our sends do not need one: the Calling
        guide's ``apply_async(connection=conn)`` is accepted and sends through the app as always."""
        import kombu

        return kombu.Connection(url or self.broker_url(), **kwargs)

    connection_for_read = connection_for_write
    connection = connection_for_write
    broker_connection = connection_for_write

    @property
    def pool(self) -> Any:
        """Celery's ``app.pool``: a kombu connection pool to the broker (``broker_pool_limit``)."""
        if self._kombu_pool is None:
            self._kombu_pool = self.connection_for_write().Pool(limit=self.conf.broker_pool_limit)
        return self._kombu_pool

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

    @Task.setter
    def Task(self, base: Any) -> None:  # noqa: N802 - Celery's ``app.Task = MyBaseTask``
        """A new default base for the tasks defined from now on, as Celery's (a class or "module:Class")."""
        self._task_cls = _resolve_task_cls(base)
        self._app_task_cls = None

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
        telling ``import_modules`` receivers, as Celery's loader does; then finalize the app."""
        signals.import_modules.send(sender=self)
        names = [*(self.conf.get("imports") or ()), *(self.conf.get("include") or ())]
        modules = [importlib.import_module(name) for name in dict.fromkeys(names)]
        self.apply_annotations()
        self.finalize()
        return modules

    # -- lifecycle (engine.app_lifecycle) ---------------------------------------------------------
    on_configure = property(lambda self: self._lifecycle.on_configure)
    on_after_configure = property(lambda self: self._lifecycle.on_after_configure)
    on_after_finalize = property(lambda self: self._lifecycle.on_after_finalize)
    on_after_fork = property(lambda self: self._lifecycle.on_after_fork)

    @property
    def finalized(self) -> bool:
        return self._lifecycle.finalized

    def finalize(self, auto: bool = False) -> None:
        """Send ``on_after_configure`` and ``on_after_finalize`` to their receivers, the first time only."""
        self._lifecycle.finalize(self)

    def add_periodic_task(
        self, schedule: Any, sig: Any, args: Any = (), kwargs: Any = (), name: str | None = None, **opts: Any
    ) -> str:
        """Celery's: add ``sig`` to ``beat_schedule`` under ``name`` (else the signature's repr);
        ``schedule`` is seconds, a ``timedelta``, a ``crontab`` or any schedule. Returns the key."""
        key, entry = app_lifecycle.periodic_entry(self, schedule, sig, args, kwargs, name, **opts)
        app_lifecycle.add_periodic_task(self, key, entry, named=name is not None)
        return key

    def default_name(self, fun: Callable[..., Any]) -> str:
        return self.gen_task_name(fun.__name__, getattr(fun, "__module__", None) or "__main__")

    @property
    def GroupResult(self) -> type[Any]:  # noqa: N802 - Celery's ``app.GroupResult.restore(group_id)``
        if self._group_result_cls is None:
            from engine.group_result import bound_group_result

            self._group_result_cls = bound_group_result(self)
        return self._group_result_cls

    def ResultSet(self, results: Sequence[Any], **kwargs: Any) -> Any:  # noqa: N802 - Celery's name
        from engine.result import ResultSet

        return ResultSet(results, app=self, **kwargs)

    def AsyncResult(self, task_id: str, task_name: str | None = None) -> AsyncResult:  # noqa: N802
        return AsyncResult(task_id, self, task_name=task_name)

    def signature(
        self, name: str, args: Sequence[Any] | None = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Signature:
        """Celery's ``app.signature(name, args, kwargs, immutable=..., countdown=...)``."""
        own = {key: options.pop(key) for key in ("options", "immutable", "subtask_type") if key in options}
        return Signature(
            name,
            args or (),
            kwargs,
            options={**(own.pop("options", None) or {}), **options},
            app=self,
            **own,
        )

    # -- sending (engine.sending) ---------------------------------------------------------------
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
        try:
            return self._sending.send(name, args, kwargs, task, options)
        except BrokerUnavailable as exc:
            from engine.kombu_errors import operational  # (kombu only once a send failed)

            raise operational(exc) from None

    def send_many(
        self,
        name: str,
        calls: Sequence[tuple[Sequence[Any], dict[str, Any] | None]],
        *,
        task: TaskT | None = None,
        **options: Any,
    ) -> list[ResultT]:
        """Bulk ``send_task``: one message per ``(args, kwargs)`` with the same options, all
        published in one round trip. Routing is decided once, from the first call's arguments."""
        try:
            return self._sending.send_many(name, calls, task, options)
        except BrokerUnavailable as exc:
            from engine.kombu_errors import operational  # (kombu only once a send failed)

            raise operational(exc) from None

    def _prepare_send(
        self,
        name: str,
        args: Sequence[Any] | None,
        kwargs: dict[str, Any] | None,
        task: TaskT | None,
        options: dict[str, Any],
    ) -> Outgoing:
        """``Sender.prepare``: what ``engine.aio.asend_task`` shares with ``send_task``."""
        return self._sending.prepare(name, args, kwargs, task, options)

    def _after_send(self, out: Outgoing, sent_at: float) -> ResultT:
        """``Sender.after_send``, for ``engine.aio.asend_task``."""
        return self._sending.after_send(out, sent_at)


def is_task_function(obj: Any) -> bool:
    return isinstance(obj, Task) or (inspect.isfunction(obj) and hasattr(obj, "__wrapped__"))
