"""The result-backend contract: store a task's meta document, read it, wait for it."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from engine.backend.keyvalue import BaseKeyValueStoreBackend

__all__ = ["BaseKeyValueStoreBackend", "Reply", "ResultBackend"]


class Reply(NamedTuple):
    """Who asked for a task, from its message's properties: what a backend that answers the sender
    directly (``rpc://``) needs when a worker stores an outcome outside a run (revoked or expired
    before it ran, its process lost), where there is no running request to read it from."""

    reply_to: str
    correlation_id: str


class ResultBackend(Protocol):
    url: str

    def store(self, task_id: str, meta: dict[str, Any], reply: Reply | None = None) -> None: ...
    def get_meta(self, task_id: str) -> dict[str, Any] | None: ...
    def wait(self, task_id: str, timeout: float | None) -> dict[str, Any] | None: ...
    def forget(self, task_id: str) -> None: ...
    def close(self) -> None: ...
