"""Exceptions with Celery's names, so user code that catches them moves over unchanged.

The module paths recorded in result metadata stay ``celery.exceptions`` for the Celery-named
ones (see ``protocol/results.py``), so a Celery client reading our results re-creates them.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any


def one_line(exc: BaseException) -> str:
    """An exception's text on one line (a server's reply may span several), or its class's name
    when it has none: what the engine's one-line errors and log lines quote."""
    return " ".join(str(exc).split()) or type(exc).__name__


class CeleryError(Exception):
    """Base of Celery's own errors, as in Celery: ``except CeleryError`` keeps catching them."""


class TaskPredicate(CeleryError):
    """Celery's base of ``Retry``, ``Ignore`` and ``Reject``: what a task raises to steer the worker."""


class TaskError(CeleryError):
    """Base for errors raised by the engine about tasks."""


def _retry(message: str | None, exc: BaseException | None, when: float | None) -> Retry:
    return Retry(message, exc, when)


class Retry(TaskPredicate, TaskError):
    """Raised by ``Task.retry()``: tells the executor the task was re-published, not failed.

    Named ``celery.exceptions.Retry`` where Python prints a qualified name (tracebacks, stored
    with a retried task and sent in ``task-retried``), as Celery's is, so tools and log searches
    that look for Celery's name find ours. It still lives here: celery need not be installed,
    and it pickles through ``_retry`` rather than by that name.
    """

    __module__ = "celery.exceptions"

    def __init__(
        self,
        message: str | None = None,
        exc: BaseException | None = None,
        when: float | dt.datetime | None = None,
        **kwargs: Any,
    ) -> None:
        self.message = message
        self.exc = exc
        self.when = when
        self.result = kwargs.get("result")  # eager mode: the settled result of the re-run
        super().__init__(message or (repr(exc) if exc else "Retry"), when)

    def humanize(self) -> str:
        if self.when is None:
            return "now"
        return f"at {self.when}" if isinstance(self.when, dt.datetime) else f"in {self.when}s"

    def __reduce__(self) -> tuple[Any, ...]:
        return _retry, (self.message, self.exc, self.when)

    def __str__(self) -> str:
        reason = self.message or (repr(self.exc) if self.exc else "")
        return f"Retry {self.humanize()}: {reason}".rstrip(": ")


class MaxRetriesExceededError(TaskError):
    """The task asked to retry once more than ``max_retries`` allows."""


class _NamedByArgs(Exception):
    """``str()`` is the class name and its arguments, ``SoftTimeLimitExceeded()`` or
    ``TimeLimitExceeded(2.0,)``, as Celery 5.7's time-limit errors read in a stored traceback, a
    log line and ``str(result.result)``: with no message, a bare ``str()`` would be empty."""

    def __str__(self) -> str:
        return type(self).__name__ + repr(self.args)


class SoftTimeLimitExceeded(_NamedByArgs):
    """Raised inside a running task when its soft time limit passes, so it can clean up.
    Raised with no arguments, as Celery's."""


class TimeLimitExceeded(_NamedByArgs):
    """The hard time limit passed and the process running the task was killed. Its one
    argument is the limit in seconds, as Celery's (``TimeLimitExceeded(2.0)``)."""


class Ignore(TaskPredicate, TaskError):
    """Raised by a task to end without a result or callbacks (``Task.replace`` raises it)."""


class Reject(TaskPredicate, TaskError):
    """Raised by a task to refuse its message; with ``requeue=True`` it goes back to the queue."""

    def __init__(self, reason: Any = None, requeue: bool = False) -> None:
        self.reason = reason
        self.requeue = requeue
        super().__init__(reason, requeue)


class NotRegistered(KeyError, TaskError):
    """A message named a task this worker does not know."""


class TaskRevokedError(TaskError):
    """The task was revoked (or expired) before or while it ran."""


class WorkerLostError(Exception):
    """The process running the task died before it finished."""


class ChordError(TaskError):
    """A chord header task failed, so the body cannot run."""


class IncompleteStream(TaskError):
    """``result.collect()`` reached a result that is not ready (pass ``intermediate=True`` to go on)."""


class TimeoutError(TaskError):  # noqa: A001 - Celery's name, importable from here as in Celery
    """``AsyncResult.get()`` ran out of time."""


class EncodeError(TaskError):
    """A task's return value cannot be serialized for the result backend (kombu's name)."""


class ContentDisallowed(TaskError):
    """A message used a serializer that ``accept_content`` does not allow (pickle by default)."""


class ImproperlyConfigured(CeleryError):
    """A setting or URL cannot work; the message says which and why."""


class BackendError(Exception):
    """The result backend failed (Celery's name)."""


class BackendStoreError(BackendError):
    """A task's outcome could not be stored in the result backend (Celery's name)."""


class BrokerUnavailable(Exception):
    """The broker cannot be reached; the message names the host with the password masked. What a
    send raises is also kombu's ``OperationalError``, as Celery's (``engine.kombu_errors``)."""


class InvalidTaskError(TaskError):
    """A task message with missing or malformed fields."""


class QueueNotFound(KeyError, TaskError):
    """A task was routed to a queue that is not configured (``task_create_missing_queues`` off)."""


class AlreadyRegistered(TaskError):
    """A task of that name is registered already."""


class SecurityError(CeleryError):
    """A message failed a security check (its signature)."""


class BackendGetMetaError(BackendError):
    """The result backend could not be read."""


class Terminated(Exception):
    """The process running the task was ended on request (``revoke(terminate=True)``)."""


RetryTaskError = Retry  # Celery's older name


class CeleryWarning(UserWarning):
    """The base of the warnings below, so ``warnings.filterwarnings`` written for Celery's apply."""


class AlwaysEagerIgnored(CeleryWarning):
    """``send_task`` sends even with ``task_always_eager``: it has no task to run here."""


class DuplicateTaskNameWarning(CeleryWarning):
    """Two callables were registered under one task name."""


class DuplicateNodenameWarning(CeleryWarning):
    """Two workers run under the same node name."""


class NotConfigured(CeleryWarning):
    """No configuration was found."""


class SecurityWarning(CeleryWarning):
    """A setting weakens security (e.g. pickle accepted)."""


class FixupWarning(CeleryWarning):
    """A framework fixup could not be applied."""


class CDeprecationWarning(DeprecationWarning):
    """A Celery API this engine keeps for old code, deprecated there."""


class CPendingDeprecationWarning(PendingDeprecationWarning):
    """A Celery API that will be deprecated."""


if TYPE_CHECKING:
    from kombu.exceptions import OperationalError as OperationalError
else:  # (hidden from the type checker, which would take any name of this module as real)

    def __getattr__(name: str) -> Any:
        """``from engine.exceptions import OperationalError``: kombu's, as ``celery.exceptions``
        has it, imported on first use (``engine.kombu_errors`` says why)."""
        if name == "OperationalError":
            from kombu.exceptions import OperationalError

            return OperationalError
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


CELERY_EXCEPTIONS: dict[str, type[BaseException]] = {
    cls.__name__: cls
    for cls in (
        Retry,
        MaxRetriesExceededError,
        SoftTimeLimitExceeded,
        TimeLimitExceeded,
        Reject,
        NotRegistered,
        TaskRevokedError,
        WorkerLostError,
        ChordError,
        TimeoutError,
        Ignore,
        ImproperlyConfigured,
        BackendError,
        BackendStoreError,
        InvalidTaskError,
        QueueNotFound,
        AlreadyRegistered,
        SecurityError,
        BackendGetMetaError,
        Terminated,
    )
}
