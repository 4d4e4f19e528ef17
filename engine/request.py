"""The per-run context a bound task reads as ``self.request``."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
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
    headers: dict[str, Any] = field(default_factory=dict)
    callbacks: list[Any] | None = None
    errbacks: list[Any] | None = None
    chain: list[Any] | None = None
    chord: dict[str, Any] | None = None
    origin: str | None = None
    ignore_result: bool = False
    timelimit: tuple[float | None, float | None] = (None, None)
    is_eager: bool = False
    called_directly: bool = True

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


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
