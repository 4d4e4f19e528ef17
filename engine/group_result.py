"""``GroupResult``: the results of a group (or a chord's header), read in header order.

Saved and restored in Celery's layout (``celery-taskset-meta-<id>`` holding ``as_tuple()``), so
a group saved by either client can be restored by the other.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from engine import states
from engine.joins import assert_will_not_block
from engine.protocol.results import group_key
from engine.result import AsyncResult, MemberStates

if TYPE_CHECKING:
    from engine.app import App


class GroupResult(MemberStates, AsyncResult):
    def __init__(
        self,
        id: str | None = None,
        results: Sequence[AsyncResult] | None = None,
        app: App | None = None,
        parent: AsyncResult | None = None,
        **_: Any,
    ) -> None:
        super().__init__(id or "", app, parent=parent)
        self.results = list(results or [])

    def __iter__(self) -> Iterator[AsyncResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> AsyncResult:
        return self.results[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupResult):
            return other.id == self.id and other.results == self.results
        return NotImplemented

    __hash__ = AsyncResult.__hash__

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id for r in self.results)}]>"

    @property
    def children(self) -> list[AsyncResult]:  # type: ignore[override]
        return self.results

    def maybe_throw(self, propagate: bool = True, callback: Any = None) -> None:  # type: ignore[override]
        """The first failed member's error (a chord's header, as a parent of its body)."""
        for result in self.results:
            result.maybe_throw(propagate=propagate, callback=callback)

    @property
    def state(self) -> str:  # type: ignore[override]
        if self.failed():
            return states.FAILURE
        return states.SUCCESS if self.ready() else states.PENDING

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5, **kw: Any) -> list[Any]:
        """Each member's own outcome, as Celery's native join on Redis reads them: a member whose
        parent failed is waited for until the worker marks it failed too (its parents are not
        followed), so once ``get`` raises, every member that will fail already says so."""
        kw.setdefault("follow_parents", False)
        if kw.get("disable_sync_subtasks", True):
            assert_will_not_block()
        values = [r.get(timeout=timeout, propagate=propagate, **kw) for r in self.results]
        self._fulfil()
        return values

    join = get
    join_native = get

    def revoke(self, terminate: bool = False, signal: str = "SIGTERM", **_: Any) -> None:
        for result in self.results:
            result.revoke(terminate=terminate, signal=signal)

    def forget(self) -> None:
        for result in self.results:
            result.forget()

    def as_tuple(self) -> tuple[Any, Any]:
        """Celery's nested tuple form: ``((id, parent), [member tuples])``."""
        parent = self.parent.as_tuple() if self.parent is not None else None
        return (self.id, parent), [as_tuple(r) for r in self.results]

    def save(self, backend: Any = None) -> GroupResult:
        backend = backend or self._backend()
        doc = {"result": self.as_tuple()}
        backend.client.setex(group_key(self.id), int(backend.expires or 86400), json.dumps(doc))
        return self

    def delete(self, backend: Any = None) -> None:
        (backend or self._backend()).client.delete(group_key(self.id))

    @classmethod
    def restore(cls, id: str, backend: Any = None, app: App | None = None) -> GroupResult | None:
        """A group saved by ``save()`` (ours or Celery's), or None."""
        if app is None and backend is not None and not hasattr(backend, "client"):
            app, backend = backend, None  # the older ``restore(group_id, app)`` call
        if backend is None:
            if app is None:  # Celery's falls back to the current app the same way
                from engine.shared import _current_app

                app = _current_app()
            backend = app.backend
        data = backend.client.get(group_key(id))
        if not data:
            return None
        restored = result_from_tuple(json.loads(data)["result"], app)
        return restored if isinstance(restored, GroupResult) else None


def as_tuple(result: AsyncResult) -> tuple[Any, Any]:
    return result.as_tuple()


def result_from_tuple(value: Any, app: App | None = None) -> AsyncResult:
    """The inverse of ``as_tuple`` (Celery's ``result_from_tuple``)."""
    (node_id, parent), nodes = value
    parent_result = result_from_tuple(parent, app) if parent else None
    if nodes is not None:
        return GroupResult(node_id, [result_from_tuple(n, app) for n in nodes], app=app, parent=parent_result)
    return AsyncResult(node_id, app, parent=parent_result)


def bound_group_result(app: App) -> type[GroupResult]:
    """Celery's ``app.GroupResult``: the class with ``app`` as its default app, so
    ``app.GroupResult(id, results)`` and ``app.GroupResult.restore(id)`` need no ``app=``."""
    own = app

    class BoundGroupResult(GroupResult):
        def __init__(
            self,
            id: str | None = None,
            results: Sequence[AsyncResult] | None = None,
            app: App | None = None,
            parent: AsyncResult | None = None,
            **kw: Any,
        ) -> None:
            super().__init__(id, results, app or own, parent, **kw)

        @classmethod
        def restore(cls, id: str, backend: Any = None, app: App | None = None) -> GroupResult | None:
            if backend is None and app is None:
                app = own
            return GroupResult.restore(id, backend, app)

    BoundGroupResult.__name__ = BoundGroupResult.__qualname__ = "GroupResult"
    return BoundGroupResult
