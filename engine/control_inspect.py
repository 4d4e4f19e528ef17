"""``app.control.inspect()``: Celery's ``Inspect`` object, one method per inspect command.

``app.control.inspect().active()`` (and ``inspect(destination=[...], timeout=...)``) is how
Celery code and tools ask workers what they are doing; each method returns
``{node: reply}``, or None when no worker answered, as Celery's does.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.control import Control


class Inspect:
    def __init__(
        self,
        control: Control,
        destination: str | Sequence[str] | None = None,
        timeout: float = 1.0,
        limit: int | None = None,
        pattern: str | None = None,
        matcher: str | None = None,
    ) -> None:
        self.control = control
        self.destination = destination
        self.timeout = timeout
        self.limit = limit
        self.pattern = pattern
        self.matcher = matcher

    def _request(self, command: str, **arguments: Any) -> dict[str, Any] | None:
        one = isinstance(self.destination, str)
        dest = [self.destination] if isinstance(self.destination, str) else self.destination
        replies = self.control.broadcast(
            command,
            arguments,
            destination=list(dest) if dest else None,
            pattern=self.pattern,
            timeout=self.timeout,
            limit=self.limit,
        )
        if not replies:
            return None
        by_node: dict[str, Any] = {}
        for reply in replies:
            by_node.update(reply)
        if one:  # Celery: a single destination name gives that node's reply itself
            return by_node.get(self.destination)  # type: ignore[arg-type]
        if self.pattern:
            return {node: r for node, r in by_node.items() if _matches(node, self.pattern, self.matcher)}
        return by_node

    # -- Celery's inspect commands ---------------------------------------------------------------
    def report(self) -> dict[str, Any] | None:
        return self._request("report")

    def clock(self) -> dict[str, Any] | None:
        return self._request("clock")

    def active(self, safe: bool | None = None) -> dict[str, Any] | None:
        return self._request("active", safe=safe)

    def scheduled(self, safe: bool | None = None) -> dict[str, Any] | None:
        return self._request("scheduled", safe=safe)

    def reserved(self, safe: bool | None = None) -> dict[str, Any] | None:
        return self._request("reserved", safe=safe)

    def stats(self) -> dict[str, Any] | None:
        return self._request("stats")

    def revoked(self) -> dict[str, Any] | None:
        return self._request("revoked")

    def registered(self, *taskinfoitems: str) -> dict[str, Any] | None:
        return self._request("registered", taskinfoitems=list(taskinfoitems))

    registered_tasks = registered

    def ping(self, destination: Sequence[str] | None = None) -> dict[str, Any] | None:
        if destination:
            self.destination = destination
        return self._request("ping")

    def active_queues(self) -> dict[str, Any] | None:
        return self._request("active_queues")

    def query_task(self, *ids: str | Sequence[str]) -> dict[str, Any] | None:
        """``query_task(id1, id2)``, or the older ``query_task([id1, id2])``."""
        flat = list(ids[0]) if len(ids) == 1 and isinstance(ids[0], list | tuple) else list(ids)
        return self._request("query_task", ids=flat)

    def conf(self, with_defaults: bool = False) -> dict[str, Any] | None:
        return self._request("conf", with_defaults=with_defaults)

    def hello(self, from_node: str, revoked: Any = None) -> dict[str, Any] | None:
        return self._request("hello", from_node=from_node, revoked=revoked)

    def memsample(self) -> dict[str, Any] | None:
        return self._request("memsample")

    def memdump(self, samples: int = 10) -> dict[str, Any] | None:
        return self._request("memdump", samples=samples)

    def objgraph(self, type: str = "Request", n: int = 200, max_depth: int = 10) -> dict[str, Any] | None:  # noqa: A002
        return self._request("objgraph", num=n, max_depth=max_depth, type=type)


def _matches(node: str, pattern: str, matcher: str | None) -> bool:
    if matcher == "pcre":
        return re.search(pattern, node) is not None
    return fnmatch.fnmatchcase(node, pattern)
