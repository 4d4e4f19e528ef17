"""What crosses the pipe between the prefork parent and its children, as named tuples.

Every field is named where it is built and read; on the wire they travel as plain tuples
(``wire``/``*_from_wire``): pickling a named tuple writes and looks up its class for every
message, which cost a sixth of a busy worker's CPU per task.
"""

from __future__ import annotations

import datetime
from dataclasses import fields
from typing import TYPE_CHECKING, Any, NamedTuple

from engine.request import Request, message_fields
from engine.trace import Outcome

if TYPE_CHECKING:
    from engine.protocol.task import TaskMessage


class RequestFields(NamedTuple):
    """``Request``'s leading fields, in its declared order (``build`` relies on that order;
    ``tests/unit/test_worker_wire.py`` checks it)."""

    id: str
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    retries: int
    hostname: str
    delivery_info: dict[str, Any]
    root_id: str | None
    parent_id: str | None
    group: str | None
    group_index: int | None
    eta: str | None
    expires: str | None
    message_headers: dict[str, Any]
    callbacks: list[Any] | None
    errbacks: list[Any] | None
    chain: list[Any] | None
    chord: dict[str, Any] | None
    origin: str | None
    ignore_result: bool
    timelimit: tuple[float | None, float | None]
    is_eager: bool
    called_directly: bool
    properties: dict[str, Any]

    def build(self) -> Request:
        return Request(*self)  # also works on the plain tuple that crossed the pipe


def request_of(
    message: TaskMessage, hostname: str | None, ignore_result: bool, hard: float | None, soft: float | None
) -> RequestFields:
    """A worker's request for a decoded message: the message's fields, with what the worker decided
    (the task's ``ignore_result``, the time limits in force)."""
    fields = message_fields(message, hostname)
    fields["ignore_result"] = bool(fields["ignore_result"] or ignore_result)
    fields["timelimit"] = (hard, soft)
    fields["is_eager"] = False
    return RequestFields(**fields)


REQUEST_ORDER = tuple(f.name for f in fields(Request))[: len(RequestFields._fields)]


NO_FENCE = -1


class RunOrder(NamedTuple):
    """Parent → child: run this task. ``key`` names the job in the parent's books.

    ``request`` is the message's own bytes when it has them: the child decodes them again and
    builds the request itself (``request_of``), which takes building and pickling the request's
    24 fields off the parent's busiest thread (the children are idle most of a drain). The
    parent already decoded and checked those bytes, so the child's decode cannot fail on them.
    A job without them (built by hand) sends its ``RequestFields``.
    """

    key: int
    name: str
    soft_limit: float | None
    request: RequestFields | bytes
    epoch: int  # the lease epoch it was fetched in; NO_FENCE: ours already (claimed just now)
    hard_limit: float | None = None
    ignore_result: bool = False  # the task's own setting (the message's is ORed in by ``request_of``)


class Started(NamedTuple):
    """Child → parent: ``pid`` took job ``key`` off the shared queue at ``at`` (monotonic clock,
    which is system-wide on Linux, so the parent's hard deadline counts from the real start);
    ``ran`` is False when the job was cancelled (revoked or shutdown) before it began, or
    ``fenced``: the lease no longer proves it ours (the parent asks the broker, see ``Shared``)."""

    key: int
    pid: int
    at: float
    wall: float  # the same moment on the wall clock: the task's ``time_start`` and task-started's time
    ran: bool
    fenced: bool = False


class Finished(NamedTuple):
    """Child → parent: the summary of a run (the result itself stays in the backend)."""

    key: int
    state: str
    runtime: float
    result_repr: str | None
    exception_repr: str | None
    traceback: str | None
    requeue: bool
    retry_when: float | datetime.datetime | None  # retry(eta=...) gives a datetime
    internal: str | None

    @classmethod
    def of(cls, key: int, o: Outcome) -> Finished:
        return cls(
            key=key,
            state=o.state,
            runtime=o.runtime,
            result_repr=o.result_repr,
            exception_repr=o.exception_repr,
            traceback=o.traceback,
            requeue=o.requeue,
            retry_when=o.retry_when,
            internal=o.internal,
        )

    def outcome(self) -> Outcome:
        return Outcome(
            state=self.state,
            runtime=self.runtime,
            result_repr=self.result_repr,
            exception_repr=self.exception_repr,
            traceback=self.traceback,
            requeue=self.requeue,
            retry_when=self.retry_when,
            internal=self.internal,
        )


def order_to_wire(order: RunOrder) -> tuple[Any, ...]:
    request = order.request if isinstance(order.request, bytes) else tuple(order.request)
    return (order.key, order.name, order.soft_limit, request, order.epoch, order.hard_limit, order.ignore_result)


def order_from_wire(raw: tuple[Any, ...]) -> RunOrder:
    """The request stays the message's bytes, or a plain tuple in ``RequestFields`` order
    (``Request(*request)``)."""
    return RunOrder._make(raw)


STARTED_FIELDS = len(Started._fields)


def report_from_wire(raw: tuple[Any, ...]) -> Started | Finished:
    """A child's report: a ``Started`` or a ``Finished`` (told apart by their sizes)."""
    return Started._make(raw) if len(raw) == STARTED_FIELDS else Finished._make(raw)
