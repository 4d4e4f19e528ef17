"""The per-run context a bound task reads as ``self.request`` (Celery's ``Context``).

The stored fields are what crosses the pipe to a pool child; everything else Celery's context
offers (``correlation_id``, ``reply_to``, ``stamps``, ``shadow``, custom headers as attributes...)
is derived from the message's headers and properties on access, so it costs nothing per task.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

# Header keys that are Celery's own: ``request.headers`` lists only the others, as Celery's does.
CELERY_HEADER_KEYS = frozenset(
    {
        "lang",
        "task",
        "id",
        "shadow",
        "eta",
        "expires",
        "group",
        "group_index",
        "retries",
        "timelimit",
        "root_id",
        "parent_id",
        "argsrepr",
        "kwargsrepr",
        "origin",
        "ignore_result",
        "replaced_task_nesting",
        "stamped_headers",
        "stamps",
        "compression",
        "reply_to",
        "correlation_id",
        "hostname",
        "delivery_info",
        "args",
        "kwargs",
        "callbacks",
        "errbacks",
        "chain",
        "chord",
        "is_eager",
        "called_directly",
        "properties",
        "taskset",
        "utc",
        "sent_at",
    }
)


@dataclass
class Request:
    id: str | None = None
    name: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    hostname: str | None = None
    delivery_info: dict[str, Any] = field(default_factory=dict)
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    eta: str | None = None
    expires: str | None = None
    message_headers: dict[str, Any] = field(default_factory=dict)
    callbacks: list[Any] | None = None
    errbacks: list[Any] | None = None
    chain: list[Any] | None = None
    chord: dict[str, Any] | None = None
    origin: str | None = None
    ignore_result: bool = False
    timelimit: tuple[float | None, float | None] = (None, None)
    is_eager: bool = False
    called_directly: bool = True
    properties: dict[str, Any] = field(default_factory=dict)
    loglevel: int | None = None
    logfile: str | None = None
    utc: bool = True

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def __getattr__(self, name: str) -> Any:
        """Any other message header reads as an attribute (Celery's context copies them all in)."""
        if name.startswith("__") or name == "message_headers":
            raise AttributeError(name)
        headers = self.__dict__.get("message_headers") or {}
        if name in headers:
            return headers[name]
        raise AttributeError(name)

    # -- Celery's derived fields ---------------------------------------------------------------
    @property
    def headers(self) -> dict[str, Any] | None:
        """The custom headers only (``apply_async(headers=...)``, stamps), or None: Celery's shape."""
        custom = {k: v for k, v in (self.message_headers or {}).items() if k not in CELERY_HEADER_KEYS}
        return custom or None

    @property
    def task(self) -> str | None:
        return self.name

    @property
    def taskset(self) -> str | None:
        return self.group

    @property
    def shadow(self) -> str | None:
        return (self.message_headers or {}).get("shadow")

    @property
    def correlation_id(self) -> str | None:
        return (self.properties or {}).get("correlation_id") or self.id

    @property
    def reply_to(self) -> str | None:
        return (self.properties or {}).get("reply_to")

    @property
    def replaced_task_nesting(self) -> int:
        return int((self.message_headers or {}).get("replaced_task_nesting") or 0)

    @property
    def stamped_headers(self) -> list[str] | None:
        return (self.message_headers or {}).get("stamped_headers")

    @property
    def stamps(self) -> dict[str, Any] | None:
        """``{header: value}`` for each stamped header, as Celery's worker builds it."""
        headers = self.message_headers or {}
        if "stamps" not in headers and "stamped_headers" not in headers:
            return None
        stamps = headers.get("stamps") or {}
        return {name: stamps.get(name, headers.get(name)) for name in headers.get("stamped_headers") or ()}

    @property
    def time_limit(self) -> float | None:
        return (list(self.timelimit or ()) + [None])[0]

    @property
    def soft_time_limit(self) -> float | None:
        return (list(self.timelimit or ()) + [None, None])[1]

    @property
    def argsrepr(self) -> str | None:
        return (self.message_headers or {}).get("argsrepr")

    @property
    def kwargsrepr(self) -> str | None:
        return (self.message_headers or {}).get("kwargsrepr")

    @property
    def children(self) -> list[Any]:
        return self.__dict__.setdefault("_children", [])

    def as_execution_options(self) -> dict[str, Any]:
        """The options that re-send this request as it came (what ``retry``/``replace`` reuse)."""
        hard, soft = (list(self.timelimit or ()) + [None, None])[:2]
        options: dict[str, Any] = {
            "task_id": self.id,
            "root_id": self.root_id,
            "parent_id": self.parent_id,
            "group_id": self.group,
            "group_index": self.group_index,
            "shadow": self.shadow,
            "chord": self.chord,
            "chain": self.chain,
            "link": self.callbacks,
            "link_error": self.errbacks,
            "expires": self.expires,
            "soft_time_limit": soft,
            "time_limit": hard,
            "headers": self.headers,
            "retries": self.retries,
            "reply_to": self.reply_to,
            "replaced_task_nesting": self.replaced_task_nesting,
            "origin": self.origin,
        }
        stamps, stamped = self.stamps, self.stamped_headers
        if stamps is not None and stamped is not None:
            options["stamped_headers"] = stamped
            options.update({k: v for k, v in stamps.items() if k in stamped})
        return options

    def __repr__(self) -> str:
        return f"<Context: id={self.id!r} name={self.name!r} retries={self.retries}>"


def from_message(message: Any, hostname: str | None) -> Request:
    """The context of a message that will not run (revoked, expired): what ``task_revoked`` receivers get."""
    return Request(**message_fields(message, hostname))


def message_fields(message: Any, hostname: str | None) -> dict[str, Any]:
    """A request's fields as the message gives them; a worker's job overrides what the task decides
    (``ignore_result``, ``timelimit``)."""
    embed = message.embed or {}
    h = message.headers
    return {
        "id": message.id,
        "name": message.name,
        "args": message.args,
        "kwargs": message.kwargs,
        "retries": message.retries,
        "hostname": hostname,
        "delivery_info": message.delivery_info,
        "root_id": message.root_id,
        "parent_id": message.parent_id,
        "group": message.group,
        "group_index": h.get("group_index"),
        "eta": h.get("eta"),
        "expires": h.get("expires"),
        "message_headers": h,
        "callbacks": embed.get("callbacks"),
        "errbacks": embed.get("errbacks"),
        "chain": embed.get("chain"),
        "chord": embed.get("chord"),
        "origin": h.get("origin"),
        "ignore_result": message.ignore_result,
        "timelimit": message.timelimit,
        "called_directly": False,
        "properties": message.properties,
    }


class RequestStack(threading.local):
    """One stack per thread: a task that calls another task directly sees its own request."""

    def __init__(self) -> None:
        self.stack: list[Request] = []

    @property
    def top(self) -> Request:
        return self.stack[-1] if self.stack else Request()

    def push(self, request: Request) -> None:
        self.stack.append(request)

    def pop(self) -> None:
        if self.stack:
            self.stack.pop()
