"""Celery's signals under Celery's names, so Sentry, OpenTelemetry and per-process database hooks
written for Celery connect here unchanged (``from engine.signals import task_prerun``).

The project keeps no global state, with this one documented exception: Celery's users connect
receivers to module-level ``Signal`` objects at import time (often before any app exists), and
the worker fires them wherever the event happens. So each ``Signal`` below is a process-wide
singleton holding its own list of receivers, exactly as Celery's are. Nothing else lives here.

A receiver that raises is logged (with its traceback) and the error is returned in ``send``'s
list instead of its answer: a broken hook never stops a task, a publish or a worker.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

log = logging.getLogger("engine.signals")

Receiver = Callable[..., Any]
_NONE_ID = ("none",)


def _sender_key(sender: Any) -> Any:
    """How senders compare: strings by value (task names), everything else by identity."""
    if sender is None:
        return _NONE_ID
    resolve = getattr(sender, "_engine_signal_sender", None)  # shared_task proxies name their real task
    if callable(resolve):
        sender = resolve()
    if isinstance(sender, (str, bytes)):
        return ("value", sender)
    return ("id", id(sender))


def _receiver_key(receiver: Receiver | None) -> tuple[int, ...]:
    if receiver is not None and hasattr(receiver, "__func__") and hasattr(receiver, "__self__"):
        return (id(receiver.__self__), id(receiver.__func__))
    return (id(receiver),)


class Signal:
    """A named hook point: ``connect`` receivers, the engine calls ``send``.

    ``connect`` works as Celery's does: ``sig.connect(fn)``, ``@sig.connect``,
    ``@sig.connect(sender=..., weak=..., dispatch_uid=...)``. Receivers are called with
    ``signal=``, ``sender=`` and the signal's own keyword arguments, so they should take ``**kwargs``.
    """

    def __init__(self, name: str, providing_args: set[str] | None = None) -> None:
        self.name = name
        self.providing_args = frozenset(providing_args or ())
        self.receivers: list[tuple[tuple[Any, Any], Any]] = []  # ((receiver key, sender key), ref or fn)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Signal: {self.name} providing_args={set(self.providing_args)!r}>"

    def connect(
        self, *args: Any, sender: Any = None, weak: bool = True, dispatch_uid: Any = None, **_compat: Any
    ) -> Any:
        def register(fun: Receiver) -> Receiver:
            self._connect(fun, sender, weak, dispatch_uid)
            return fun

        if args and callable(args[0]):
            return register(args[0])
        return register

    def _connect(self, receiver: Receiver, sender: Any, weak: bool, dispatch_uid: Any) -> None:
        key = (("uid", dispatch_uid) if dispatch_uid is not None else _receiver_key(receiver), _sender_key(sender))
        ref: Any = receiver
        if weak:
            maker = (
                weakref.WeakMethod if hasattr(receiver, "__self__") and hasattr(receiver, "__func__") else weakref.ref
            )
            try:
                ref = maker(receiver, self._remove_dead)  # type: ignore[arg-type]
            except TypeError:  # not weakly referenceable (a builtin): keep it strongly
                ref = receiver
        with self._lock:
            if not any(existing == key for existing, _ in self.receivers):
                self.receivers.append((key, ref))

    def _remove_dead(self, _ref: Any) -> None:
        with self._lock:
            self.receivers = [(k, r) for k, r in self.receivers if not (isinstance(r, weakref.ref) and r() is None)]

    def disconnect(self, receiver: Receiver | None = None, sender: Any = None, dispatch_uid: Any = None) -> bool:
        key = (("uid", dispatch_uid) if dispatch_uid is not None else _receiver_key(receiver), _sender_key(sender))
        with self._lock:
            before = len(self.receivers)
            self.receivers = [(k, r) for k, r in self.receivers if k != key]
            return len(self.receivers) != before

    def has_listeners(self, sender: Any = None) -> bool:
        return bool(self._live(sender))

    def _live(self, sender: Any) -> list[Receiver]:
        if not self.receivers:
            return []
        wanted = _sender_key(sender)
        found = []
        for (_, sender_key), ref in list(self.receivers):
            if sender_key != _NONE_ID and sender_key != wanted:
                continue
            fun = ref() if isinstance(ref, weakref.ref) else ref
            if fun is not None:
                found.append(fun)
        return found

    def send(self, sender: Any, **named: Any) -> list[tuple[Receiver, Any]]:
        """Call every receiver for ``sender``; a receiver's error is logged and returned, not raised."""
        responses: list[tuple[Receiver, Any]] = []
        for receiver in self._live(sender):
            try:
                response = receiver(signal=self, sender=sender, **named)
            except Exception as exc:
                log.exception("Signal handler %r raised: %r", receiver, exc)
                responses.append((receiver, exc))
            else:
                responses.append((receiver, response))
        return responses

    send_robust = send  # Celery's deprecated alias


before_task_publish = Signal(
    "before_task_publish", {"body", "exchange", "routing_key", "headers", "properties", "declare", "retry_policy"}
)
after_task_publish = Signal("after_task_publish", {"body", "exchange", "routing_key"})
task_received = Signal("task_received", {"request"})
task_prerun = Signal("task_prerun", {"task_id", "task", "args", "kwargs"})
task_postrun = Signal("task_postrun", {"task_id", "task", "args", "kwargs", "retval"})
task_success = Signal("task_success", {"result"})
task_retry = Signal("task_retry", {"request", "reason", "einfo"})
task_failure = Signal("task_failure", {"task_id", "exception", "args", "kwargs", "traceback", "einfo"})
task_internal_error = Signal(
    "task_internal_error", {"task_id", "args", "kwargs", "request", "exception", "traceback", "einfo"}
)
task_revoked = Signal("task_revoked", {"request", "terminated", "signum", "expired"})
task_rejected = Signal("task_rejected", {"message", "exc"})
task_unknown = Signal("task_unknown", {"message", "exc", "name", "id"})
celeryd_init = Signal("celeryd_init", {"instance", "conf", "options"})
celeryd_after_setup = Signal("celeryd_after_setup", {"instance", "conf"})
import_modules = Signal("import_modules")
worker_init = Signal("worker_init")
worker_before_create_process = Signal("worker_before_create_process")  # prefork parent, before each fork
worker_process_init = Signal("worker_process_init")
worker_process_shutdown = Signal("worker_process_shutdown")
worker_ready = Signal("worker_ready")
worker_shutdown = Signal("worker_shutdown")
worker_shutting_down = Signal("worker_shutting_down")
heartbeat_sent = Signal("heartbeat_sent")
setup_logging = Signal("setup_logging", {"loglevel", "logfile", "format", "colorize"})
after_setup_logger = Signal("after_setup_logger", {"logger", "loglevel", "logfile", "format", "colorize"})
after_setup_task_logger = Signal("after_setup_task_logger", {"logger", "loglevel", "logfile", "format", "colorize"})
beat_init = Signal("beat_init")
beat_embedded_init = Signal("beat_embedded_init")

__all__ = [
    "Signal",
    "after_setup_logger",
    "after_setup_task_logger",
    "after_task_publish",
    "beat_embedded_init",
    "beat_init",
    "before_task_publish",
    "celeryd_after_setup",
    "celeryd_init",
    "heartbeat_sent",
    "import_modules",
    "setup_logging",
    "task_failure",
    "task_internal_error",
    "task_postrun",
    "task_prerun",
    "task_received",
    "task_rejected",
    "task_retry",
    "task_revoked",
    "task_success",
    "task_unknown",
    "worker_before_create_process",
    "worker_init",
    "worker_process_init",
    "worker_process_shutdown",
    "worker_ready",
    "worker_shutdown",
    "worker_shutting_down",
]
