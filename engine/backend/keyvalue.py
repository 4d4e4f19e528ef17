"""Celery's key/value result-backend surface: key names, ``encode``/``decode`` and ``get_many``.

Code written for Celery reaches into the backend by these names (``get_key_for_group(gid, '.j')``
to read a chord's join list, ``isinstance(backend, BaseKeyValueStoreBackend)`` to pick the
polling join); a concrete backend supplies ``get``/``mget``/``set``/``delete`` and inherits the rest.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from engine import states
from engine.exceptions import TimeoutError
from engine.protocol.results import GROUP_KEY_PREFIX, TASK_KEY_PREFIX, decode_exception, encode_exception, meta
from engine.serialization import json_dumps, json_loads

if TYPE_CHECKING:
    from engine.backend.base import Reply


class BaseKeyValueStoreBackend:
    task_keyprefix = TASK_KEY_PREFIX
    group_keyprefix = GROUP_KEY_PREFIX
    chord_keyprefix = "chord-unlock-"
    supports_native_join = True

    @property
    def _cache(self) -> dict[str, Any]:
        """Celery's cache of ready metas: off, as with Celery's default ``result_cache_max = -1``."""
        return {}

    # -- what a concrete store provides ------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.get(key) for key in keys]

    def set(self, key: str, value: str) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def store(self, task_id: str, meta: dict[str, Any], reply: Reply | None = None) -> None:
        self.set(self.get_key_for_task(task_id), self.encode(meta))

    def get_meta(self, task_id: str) -> dict[str, Any] | None:
        raw = self.get(self.get_key_for_task(task_id))
        return self.decode(raw) if raw else None  # type: ignore[no-any-return]

    # -- Celery's task-state calls, for code that writes or reads a state itself -------------------
    def store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **_: Any,
    ) -> Any:
        """Store ``state`` for ``task_id`` as a worker would (code playing a worker, a script marking a
        task done); returns the value as stored. A task already stored SUCCESS keeps it, as in Celery:
        a late or duplicate writer must never turn a finished task back into something else."""
        value = (
            encode_exception(result) if state in states.EXCEPTION_STATES and isinstance(result, Exception) else result
        )
        current = self.get_meta(task_id)
        if current is not None and current.get("status") == states.SUCCESS:
            return value
        document = meta(
            task_id,
            state,
            value,
            traceback=traceback,
            parent_id=getattr(request, "parent_id", None),
            group_id=getattr(request, "group", None),
        )
        self.store(task_id, document)
        return value

    def get_task_meta(self, task_id: str, cache: bool = True) -> dict[str, Any]:
        """The stored meta (PENDING when there is none), a failure's result as the exception."""
        found = dict(self.get_meta(task_id) or {"status": states.PENDING, "result": None})
        if found.get("status") in states.EXCEPTION_STATES and isinstance(found.get("result"), dict):
            found["result"] = decode_exception(found["result"])
        return found

    def get_state(self, task_id: str) -> str:
        return str(self.get_task_meta(task_id)["status"])

    get_status = get_state

    def get_result(self, task_id: str) -> Any:
        return self.get_task_meta(task_id).get("result")

    def get_traceback(self, task_id: str) -> str | None:
        return self.get_task_meta(task_id).get("traceback")

    def _apply_chord_incr(self, header_result_args: Any, body: Any, **kwargs: Any) -> None:
        """Celery's counter-based chord start for stores without a native join. Redis joins
        natively (``engine.backend.chord``), so nothing calls it; it is here because code written
        for Celery patches it by this name."""

    # -- Celery's names -----------------------------------------------------------------------
    def get_key_for_task(self, task_id: str, key: str = "") -> str:
        return f"{self.task_keyprefix}{task_id}{key}"

    def get_key_for_group(self, group_id: str, key: str = "") -> str:
        return f"{self.group_keyprefix}{group_id}{key}"

    def get_key_for_chord(self, group_id: str, key: str = "") -> str:
        return f"{self.chord_keyprefix}{group_id}{key}"

    def encode(self, value: Any) -> str:
        return json_dumps(value)

    def decode(self, payload: bytes | str) -> Any:
        return json_loads(payload)

    def get_many(
        self,
        task_ids: Iterable[str],
        timeout: float | None = None,
        interval: float | None = 0.5,
        on_interval: Any = None,
        max_iterations: int | None = None,
        **_: Any,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Poll for the metas of ``task_ids``, yielding each once it is ready (any order).

        The deadline is counted in time slept, never past ``timeout``: ``timeout=0`` polls
        once and then raises, as Celery's loop does since 5.7.
        """
        step = 0.5 if interval is None else interval
        pending = list(dict.fromkeys(task_ids))
        slept, rounds = 0.0, 0
        while pending:
            metas = self.mget([self.get_key_for_task(t) for t in pending])
            for task_id, raw in zip(list(pending), metas, strict=True):
                meta = self.decode(raw) if raw else None
                if meta and meta.get("status") in states.READY_STATES:
                    pending.remove(task_id)
                    yield task_id, meta
            if not pending:
                return
            if timeout is not None and slept >= timeout:
                raise TimeoutError(f"Operation timed out ({timeout})")
            if on_interval is not None:
                on_interval()
            nap = step if timeout is None else min(step, timeout - slept)
            time.sleep(nap)
            slept += nap
            rounds += 1
            if max_iterations and rounds >= max_iterations:
                return
