"""Storing a task's outcome patiently: an unreachable result store is retried with backoff for a while
(``tqctl_result_retry_timeout`` seconds) before the worker gives up on it.

Why: the outcome of a task that already ran exists nowhere else. Giving up raises ``BackendStoreError``,
which the worker turns into a dead letter (reason ``result_not_stored``) an operator can see and requeue,
never a message settled as if its result had been recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from engine import resp
from engine.exceptions import BackendStoreError, BrokerUnavailable

if TYPE_CHECKING:
    from engine.backend.base import ResultBackend

log = logging.getLogger("engine.worker")
UNREACHABLE = (BrokerUnavailable, resp.ConnectionError, resp.TimeoutError, OSError)
FIRST_PAUSE, LONGEST_PAUSE = 0.1, 2.0
T = TypeVar("T")


def store_patiently(backend: ResultBackend, task_id: str, meta: dict[str, Any], timeout: float) -> None:
    """``backend.store``, retried while the store is unreachable, for up to ``timeout`` seconds."""
    try:
        patiently(lambda: backend.store(task_id, meta), timeout)
    except BackendStoreError as exc:
        raise BackendStoreError(f"result of {task_id} not stored: {exc}") from None


def patiently(write: Callable[[], T], timeout: float) -> T:
    """``write()``, retried with backoff while the result store is unreachable, for up to
    ``timeout`` seconds; then ``BackendStoreError`` saying so (``HeldResults`` writes several
    results with it, ``store_patiently`` one)."""
    deadline = time.monotonic() + max(timeout, 0.0)
    pause = FIRST_PAUSE
    while True:
        try:
            return write()
        except UNREACHABLE as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BackendStoreError(f"the result store stayed unreachable for {timeout:g}s ({exc})") from None
            log.warning("result store unreachable, retrying in %.1fs: %s", min(pause, left), exc)
            time.sleep(min(pause, left))
            pause = min(pause * 2, LONGEST_PAUSE)
