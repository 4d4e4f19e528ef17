"""``AsyncResult``: a read-only handle on a task's outcome in the result backend."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from engine import states
from engine.exceptions import ImproperlyConfigured, TimeoutError
from engine.protocol.results import decode_exception

if TYPE_CHECKING:
    from engine.app import App


class AsyncResult:
    def __init__(
        self, id: str, app: App | None = None, task_name: str | None = None, parent: AsyncResult | None = None
    ) -> None:
        self.id = id
        self.app = app
        self.task_name = task_name
        self.parent = parent
        self._cache: dict[str, Any] | None = None

    task_id = property(lambda self: self.id)

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        return other == self.id

    def __hash__(self) -> int:
        return hash(self.id)

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
        return meta

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

    @property
    def children(self) -> list[AsyncResult]:
        found = []
        for entry in self._get_meta().get("children") or []:
            if isinstance(entry, (list, tuple)) and entry and isinstance(entry[0], (list, tuple)):
                found.append(AsyncResult(entry[0][0], self.app))
        return found

    def as_tuple(self) -> tuple[Any, Any]:
        """Celery's serializable form, ``((id, parent tuple), None)``, read by ``result_from_tuple``."""
        return (self.id, self.parent.as_tuple() if self.parent is not None else None), None

    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5, **_: Any) -> Any:
        """Wait for the outcome; raises the task's exception when ``propagate`` is set."""
        meta = self._cache
        if meta is None:
            meta = self._backend().wait(self.id, timeout)
        if not meta or meta.get("status") not in states.READY_STATES:
            raise TimeoutError(f"task {self.id} not ready after {timeout}s")
        self._cache = meta
        if meta["status"] in states.PROPAGATE_STATES:
            exc = decode_exception(meta.get("result"))
            if propagate:
                raise exc
            return exc
        return meta.get("result")

    wait = get

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

    @property
    def result(self) -> Any:
        return self._value

    info = result

    @property
    def state(self) -> str:
        return self._state

    status = state

    def get(self, timeout: float | None = None, propagate: bool = True, **_: Any) -> Any:
        if self._state in states.PROPAGATE_STATES and propagate:
            raise self._value
        return self._value

    wait = get

    def forget(self) -> None:
        pass
