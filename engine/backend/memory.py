"""An in-process backend for eager mode and unit tests: nothing leaves the process."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from engine import states

if TYPE_CHECKING:
    from engine.backend.base import Reply


class MemoryBackend:
    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._metas: dict[str, dict[str, Any]] = {}
        self._changed = threading.Condition()

    def store(self, task_id: str, meta: dict[str, Any], reply: Reply | None = None) -> None:
        with self._changed:
            self._metas[task_id] = meta
            self._changed.notify_all()

    def get_meta(self, task_id: str) -> dict[str, Any] | None:
        return self._metas.get(task_id)

    def wait(self, task_id: str, timeout: float | None) -> dict[str, Any] | None:
        def ready() -> bool:
            meta = self._metas.get(task_id)
            return bool(meta and meta["status"] in states.READY_STATES)

        with self._changed:
            self._changed.wait_for(ready, timeout)
        return self._metas.get(task_id)

    def forget(self, task_id: str) -> None:
        self._metas.pop(task_id, None)

    def close(self) -> None:
        pass
