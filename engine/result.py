"""``AsyncResult``: a read-only handle on a task's outcome in the result backend; ``ResultSet``
for any number of them."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from engine import states
from engine.exceptions import ImproperlyConfigured, TimeoutError
from engine.joins import allow_join_result as allow_join_result  # Celery's celery.result names
from engine.joins import assert_will_not_block
from engine.joins import denied_join_result as denied_join_result
from engine.protocol.results import decode_exception

if TYPE_CHECKING:
    from engine.app import App


# How often a wait for a result looks at its parents for a failure (Celery's drain interval).
_PARENT_CHECK = 1.0


class ResultBase:
    """Celery's common base of every result class (``isinstance(r, ResultBase)``)."""

    _on_ready: Any = None  # a promise made by the first ``then`` (none at send: delay() pays nothing)

    def then(self, callback: Callable[..., Any], on_error: Callable[..., Any] | None = None, weak: bool = False) -> Any:
        """Celery's ``then``: ``callback(result)`` once this result is ready (at once if it is known
        to be), else when this process next reads it ready (``get()``, ``state``, ``ready()``), as
        Celery's fires when its result consumer reads it. Returns the chained promise (``vine``);
        ``on_error`` gets what ``callback`` raises. ``weak`` is accepted: no consumer keeps a
        reference to this result here."""
        from vine import promise

        if self._on_ready is None:
            self._on_ready = promise()
        chained = self._on_ready.then(callback, on_error)
        if self._known_ready():
            self._fulfil()
        return chained

    def _known_ready(self) -> bool:
        return False

    def _fulfil(self) -> None:
        """Run the ``then`` callbacks, once: the result was just read ready."""
        if self._on_ready is not None and not self._on_ready.ready:
            self._on_ready(self)


class AsyncResult(ResultBase):
    def __init__(
        self, id: str, app: App | None = None, task_name: str | None = None, parent: AsyncResult | None = None
    ) -> None:
        self.id = id
        self.app = app
        self.task_name = task_name
        self.parent = parent
        self._cache: dict[str, Any] | None = None
        # Celery's: set by the send when the task's result is not stored (``ignore_result``), so
        # ``get`` returns None at once instead of waiting for a result that will never come.
        self.ignored = False

    task_id = property(lambda self: self.id)

    @property
    def backend(self) -> Any:
        """The result backend this handle reads (Celery's attribute; ``result.backend.get_task_meta``)."""
        return self._backend()

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"

    def __str__(self) -> str:
        """The id, as Celery's: ``f"queued {result}"`` and ``str(result)`` log the task's id."""
        return str(self.id)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        return other == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __del__(self) -> None:
        """As Celery: a handle dropped before its result was read ends the subscription its send
        opened (engine.backend.subscriptions), so unread results do not pile up channels. Never
        opens a backend, never blocks, never raises (it runs wherever the collector does)."""
        try:
            cancel = getattr(getattr(self.app, "_backend", None), "cancel_for", None)
            if cancel is not None:
                cancel(self.id)
        except Exception:  # noqa: BLE001, S110 - a finalizer must not raise
            pass

    # -- reading ------------------------------------------------------------------------------
    def _backend(self) -> Any:
        if self.app is None:  # ``AsyncResult(task_id)`` as Celery's docs write it: the current app's
            from engine.shared import existing_app

            self.app = existing_app()
        backend = self.app.backend if self.app is not None else None
        if backend is None:
            raise ImproperlyConfigured("no result backend is configured, so results cannot be read")
        return backend

    def _get_meta(self) -> dict[str, Any]:
        if self._cache is not None:
            return self._cache
        meta = self._backend().get_meta(self.id) or {"status": states.PENDING, "result": None}
        if meta.get("status") in states.READY_STATES:
            self._cache = meta
            self._fulfil()
        return meta

    def _known_ready(self) -> bool:
        return self._cache is not None  # only a ready meta is cached

    def _get_task_meta(self) -> dict[str, Any]:
        """Celery's name for the stored meta, which user code and Celery's own tests read."""
        return self._get_meta()

    @property
    def state(self) -> str:
        return str(self._get_meta().get("status", states.PENDING))

    status = state

    @property
    def result(self) -> Any:
        meta = self._get_meta()
        if meta.get("status") in states.EXCEPTION_STATES and meta.get("result") is not None:
            return decode_exception(meta["result"])
        return meta.get("result")  # a RETRY without an exception stores null, as Celery does

    info = result

    @property
    def traceback(self) -> str | None:
        return self._get_meta().get("traceback")

    @property
    def date_done(self) -> str | None:
        return self._get_meta().get("date_done")

    # -- what ``result_extended`` stores about the request (None without it, as Celery) ---------
    name = property(lambda self: self._get_meta().get("name"), doc="The task's name.")
    args = property(lambda self: self._get_meta().get("args"), doc="The positional arguments it ran with.")
    kwargs = property(lambda self: self._get_meta().get("kwargs"), doc="The keyword arguments it ran with.")
    worker = property(lambda self: self._get_meta().get("worker"), doc="The worker's node name.")
    retries = property(lambda self: self._get_meta().get("retries"), doc="How often it had been retried.")
    queue = property(lambda self: self._get_meta().get("queue"), doc="The queue it came from.")

    def exists(self) -> bool:
        """Celery 5.7's: whether anything is stored for this id, which tells a task not yet
        run (or never sent, or forgotten) from one whose PENDING state was stored."""
        return self._backend().get_meta(self.id) is not None

    @property
    def children(self) -> list[AsyncResult]:
        """The results of what this task started, as stored: a group's as a ``GroupResult`` with its
        members (Celery's ``result_from_tuple``), so ``children[0].children`` reaches them."""
        from engine.group_result import result_from_tuple

        found = []
        for entry in self._get_meta().get("children") or []:
            if isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], (list, tuple)):
                found.append(result_from_tuple(entry, self.app))
        return found

    def iterdeps(self, intermediate: bool = False) -> Iterator[tuple[AsyncResult | None, AsyncResult]]:
        """``(parent, result)`` for this result and, breadth first, the children of each ready one;
        a result not ready raises ``IncompleteStream`` unless ``intermediate`` (then it is a leaf)."""
        from engine.exceptions import IncompleteStream

        queue: collections.deque[tuple[AsyncResult | None, AsyncResult]] = collections.deque([(None, self)])
        while queue:
            parent, node = queue.popleft()
            yield parent, node
            if node.ready():
                queue.extend((node, child) for child in node.children or [])
            elif not intermediate:
                raise IncompleteStream(f"result {node.id} is not ready")

    def build_graph(self, intermediate: bool = False, formatter: Any = None) -> Any:
        """Celery's: a ``DependencyGraph`` of this result and every result it started (its
        ``children``, theirs, ...), each depending on its children; ``iterdeps`` decides what is in."""
        from engine.utils.graph import DependencyGraph, GraphFormatter

        graph = DependencyGraph(formatter=formatter or GraphFormatter(root=self.id, shape="oval"))
        for parent, node in self.iterdeps(intermediate=intermediate):
            graph.add_arc(node)
            if parent is not None:
                graph.add_edge(parent, node)
        return graph

    def collect(self, intermediate: bool = False, **get_options: Any) -> Iterator[tuple[AsyncResult, Any]]:
        """Celery's ``collect``: ``(result, value)`` for this task and everything it started (its
        ``children``, recorded while it ran), each value read with ``get(**get_options)``."""
        for _, node in self.iterdeps(intermediate=intermediate):
            yield node, node.get(**get_options)

    def get_leaf(self) -> Any:
        """The value of the last result ``iterdeps`` reaches (the leaf of the dependency tree)."""
        value = None
        for _, node in self.iterdeps():
            value = node.get()
        return value

    def as_tuple(self) -> tuple[Any, Any]:
        """Celery's serializable form, ``((id, parent tuple), None)``, read by ``result_from_tuple``."""
        return (self.id, self.parent.as_tuple() if self.parent is not None else None), None

    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        **kw: Any,
    ) -> Any:
        """Wait for the outcome; raises the task's exception when ``propagate`` is set. A result
        sent with ``ignore_result`` is never stored, so, as Celery, it returns None without waiting.

        As Celery, a failed parent (an earlier chain step, a chord's header) raises its own
        error here, checked before and while waiting: the caller learns why at once instead of
        waiting for a step that will only ever fail because of it.
        """
        if self.ignored:
            return None
        if kw.get("disable_sync_subtasks", True):
            assert_will_not_block()
        meta = self._cache
        on_message = kw.get("on_message")
        if meta is None and on_message is not None:
            meta = self._watch(on_message, timeout, interval)
        if meta is None:
            parents = kw.get("follow_parents", True) and propagate and self.parent is not None
            meta = self._wait_following_parents(timeout) if parents else self._backend().wait(self.id, timeout)
        return self._outcome(meta, timeout, propagate)

    wait = get

    def _watch(self, on_message: Callable[[dict[str, Any]], Any], timeout: float | None, interval: float) -> Any:
        """``get(on_message=fn)``: ``fn`` gets each state the task stores (``PROGRESS`` from
        ``update_state`` included, and the final one) as Celery's result message body, read every
        ``interval`` seconds or sooner when the result is ready. The last one read is returned."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: Any = None
        while True:
            meta = self._backend().get_meta(self.id)
            if meta is not None and meta != last:
                last = meta
                on_message({"task_id": self.id, **meta})
            if (meta and meta.get("status") in states.READY_STATES) or (
                deadline is not None and time.monotonic() >= deadline
            ):
                return meta
            left = interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic()))
            self._backend().wait(self.id, left)

    def _outcome(self, meta: dict[str, Any] | None, timeout: float | None, propagate: bool) -> Any:
        """The end of a wait, shared by ``get`` and ``engine.aio.aget``: a timeout if not ready,
        else the cached meta's value, or its error raised (``propagate``) or returned."""
        if not meta or meta.get("status") not in states.READY_STATES:
            raise TimeoutError(f"task {self.id} not ready after {timeout}s")
        self._cache = meta
        self._fulfil()
        if meta["status"] in states.PROPAGATE_STATES:
            exc = decode_exception(meta.get("result"))
            if propagate:
                raise exc
            return exc
        return meta.get("result")

    def _wait_following_parents(self, timeout: float | None) -> dict[str, Any] | None:
        """Celery's drain loop: the parents are looked at after every wait, the last one too, so a
        body failed *because* its header failed reports the header's error (stored first)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._maybe_reraise_parent_error()
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            meta = self._backend().wait(self.id, _PARENT_CHECK if left is None else min(left, _PARENT_CHECK))
            self._maybe_reraise_parent_error()
            if (meta and meta.get("status") in states.READY_STATES) or left is not None and left <= _PARENT_CHECK:
                return meta

    def _parents(self) -> list[AsyncResult]:
        found: list[AsyncResult] = []
        node = self.parent
        while node is not None and node not in found:
            found.append(node)
            node = node.parent
        return found

    def _maybe_reraise_parent_error(self) -> None:
        for node in reversed(self._parents()):
            node.maybe_throw()

    def maybe_throw(self, propagate: bool = True, callback: Callable[[str, Any], Any] | None = None) -> Any:
        """Raise this task's error if it failed (without waiting); else its value so far."""
        meta = self._get_meta()
        value = self.result
        if meta.get("status") in states.PROPAGATE_STATES and propagate and isinstance(value, BaseException):
            raise value
        if callback is not None:
            callback(self.id, value)
        return value

    maybe_reraise = maybe_throw

    async def aget(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """``get`` for coroutines, woken by the result's publish (engine.aio), never polling."""
        from engine import aio

        return await aio.aget(self, timeout, propagate)

    def forget(self) -> None:
        self._cache = None
        self._backend().forget(self.id)

    def revoke(self, terminate: bool = False, signal: str = "SIGTERM") -> None:
        if self.app is None:
            raise ImproperlyConfigured("result is not bound to an app")
        self.app.control.revoke(self.id, terminate=terminate, signal=signal)


class EagerResult(AsyncResult):
    """The outcome of a task run inline (eager mode): already settled, no backend needed."""

    def __init__(self, id: str, value: Any, state: str, traceback: str | None = None, app: App | None = None) -> None:
        super().__init__(id, app)
        self._value = value
        self._state = state
        self._traceback = traceback
        self._done = time.time()

    def _get_meta(self) -> dict[str, Any]:
        return {"status": self._state, "result": self._value, "traceback": self._traceback}

    def _known_ready(self) -> bool:
        return True

    @property
    def result(self) -> Any:
        return self._value

    info = result

    @property
    def state(self) -> str:
        return self._state

    status = state

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5, **kw: Any) -> Any:
        if kw.get("disable_sync_subtasks", True):
            assert_will_not_block()
        if self._state in states.PROPAGATE_STATES and propagate:
            raise self._value
        return self._value

    wait = get

    def forget(self) -> None:
        pass


class MemberStates(ResultBase):
    """The state questions a collection answers over its members; ``ResultSet`` and ``GroupResult``
    share them (a ``GroupResult`` is an ``AsyncResult``, so it cannot be a ``ResultSet``)."""

    results: list[AsyncResult]

    def successful(self) -> bool:
        return all(r.successful() for r in self.results)

    def failed(self) -> bool:
        return any(r.failed() for r in self.results)

    def waiting(self) -> bool:
        return any(not r.ready() for r in self.results)

    def ready(self) -> bool:
        if not all(r.ready() for r in self.results):
            return False
        self._fulfil()
        return True

    def _known_ready(self) -> bool:
        return self.ready()

    def completed_count(self) -> int:
        return sum(1 for r in self.results if r.successful())

    # -- the set ------------------------------------------------------------------------------
    def add(self, result: AsyncResult) -> None:
        if result not in self.results:
            self.results.append(result)

    def remove(self, result: AsyncResult | str) -> None:
        if isinstance(result, str):
            result = AsyncResult(result, getattr(self, "_app", None))
        self.results.remove(result)  # ValueError as list.remove (Celery raises KeyError)

    def discard(self, result: AsyncResult | str) -> None:
        try:
            self.remove(result)
        except ValueError:
            pass

    def update(self, results: Iterable[AsyncResult]) -> None:
        self.results.extend(r for r in results if r not in self.results)

    def clear(self) -> None:
        self.results[:] = []


class ResultSet(MemberStates):
    """Celery's ``ResultSet``: results of unrelated tasks, collected as one list in order.

    ``join`` spends one time budget over all the results (a spent budget raises rather than
    waiting without limit); ``join_native`` polls the key/value backend for all of them at once.
    """

    def __init__(self, results: Iterable[AsyncResult], app: App | None = None, **_: Any) -> None:
        self.results = list(results)
        self._app = app

    @property
    def app(self) -> App:
        if self._app is None:
            from engine.shared import _current_app

            self._app = self.results[0].app if self.results and self.results[0].app else _current_app()
        return self._app

    @app.setter
    def app(self, app: App) -> None:
        self._app = app

    @property
    def backend(self) -> Any:
        return self.results[0]._backend() if self.results else self.app.backend

    @property
    def supports_native_join(self) -> bool:
        return bool(getattr(self.backend, "supports_native_join", False))

    def __iter__(self) -> Iterator[AsyncResult]:
        return iter(self.results)

    def __getitem__(self, index: int) -> AsyncResult:
        return self.results[index]

    def __len__(self) -> int:
        return len(self.results)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ResultSet):
            return other.results == self.results
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: [{', '.join(r.id for r in self.results)}]>"

    # -- state --------------------------------------------------------------------------------
    def maybe_throw(self, callback: Callable[[str, Any], Any] | None = None, propagate: bool = True) -> None:
        for result in self.results:
            result.maybe_throw(callback=callback, propagate=propagate)

    def forget(self) -> None:
        for result in self.results:
            result.forget()

    def revoke(self, connection: Any = None, terminate: bool = False, signal: str = "SIGTERM", **_: Any) -> None:
        for result in self.results:
            result.revoke(terminate=terminate, signal=signal)

    # -- collecting ---------------------------------------------------------------------------
    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        callback: Callable[[str, Any], Any] | None = None,
        **kw: Any,
    ) -> list[Any] | None:
        join = self.join_native if self.supports_native_join else self.join
        return join(timeout=timeout, propagate=propagate, interval=interval, callback=callback, **kw)

    def join(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        callback: Callable[[str, Any], Any] | None = None,
        disable_sync_subtasks: bool = True,
        **_: Any,
    ) -> list[Any]:
        """Each result in order, all within one ``timeout``; with ``callback``, returns ``[]``."""
        if disable_sync_subtasks:
            assert_will_not_block()
        start = time.monotonic()
        values: list[Any] = []
        for result in self.results:
            remaining = None if timeout is None else max(timeout - (time.monotonic() - start), 0.0)
            value = result.get(timeout=remaining, propagate=propagate, interval=interval, disable_sync_subtasks=False)
            if callback is not None:
                callback(result.id, value)
            else:
                values.append(value)
        self._fulfil()
        return values

    def iter_native(
        self, timeout: float | None = None, interval: float = 0.5, **kw: Any
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(task_id, meta)`` as each result becomes ready, in any order."""
        return self.backend.get_many([r.id for r in self.results], timeout=timeout, interval=interval, **kw)  # type: ignore[no-any-return]

    def join_native(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        callback: Callable[[str, Any], Any] | None = None,
        **kw: Any,
    ) -> list[Any] | None:
        """``join`` by polling the backend for every result at once; ``None`` with ``callback``."""
        if kw.pop("disable_sync_subtasks", True):
            assert_will_not_block()
        kw.pop("no_ack", None), kw.pop("on_message", None)
        index = {r.id: i for i, r in enumerate(self.results)}
        values: list[Any] = [None] * len(self.results)
        for task_id, meta in self.iter_native(timeout, interval, **kw):
            value = meta.get("result")
            if meta.get("status") in states.EXCEPTION_STATES and value is not None:
                value = decode_exception(value)
                if propagate and meta.get("status") in states.PROPAGATE_STATES:
                    raise value
            if callback is not None:
                callback(task_id, value)
            else:
                values[index[task_id]] = value
        self._fulfil()
        return None if callback is not None else values


if TYPE_CHECKING:
    from engine.group_result import GroupResult as GroupResult
    from engine.group_result import result_from_tuple as result_from_tuple
else:  # (hidden from the type checker, which would take any name of this module as real)

    def __getattr__(name: str) -> Any:
        """``from engine.result import GroupResult, result_from_tuple``, as ``celery.result``
        offers them: they live in ``engine.group_result``, which imports this module, so they are
        looked up on first use rather than imported here."""
        if name in ("GroupResult", "result_from_tuple"):
            from engine import group_result

            return getattr(group_result, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
