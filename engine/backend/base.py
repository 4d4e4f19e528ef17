"""The result-backend contract: store a task's meta document, read it, wait for it."""

from __future__ import annotations

from typing import Any, Protocol

from engine.backend.keyvalue import BaseKeyValueStoreBackend

__all__ = ["BaseKeyValueStoreBackend", "ResultBackend"]


class ResultBackend(Protocol):
    url: str

    def store(self, task_id: str, meta: dict[str, Any]) -> None: ...
    def get_meta(self, task_id: str) -> dict[str, Any] | None: ...
    def wait(self, task_id: str, timeout: float | None) -> dict[str, Any] | None: ...
    def forget(self, task_id: str) -> None: ...
    def close(self) -> None: ...
