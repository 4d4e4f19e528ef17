"""Celery's guard against ``result.get()`` inside a running task: a worker task that waits for
another task can hold the last free pool slot the other one needs, so the wait never ends.

As in Celery, the refusal is a ``RuntimeError`` raised by ``get()``/``join()`` unless the caller
passes ``disable_sync_subtasks=False`` or wraps the wait in ``allow_join_result()``; both flags are
process-wide, as Celery's are, so a test that allows joins allows them for its in-process worker
too. As Celery's gevent pool, a gevent worker (the process monkey-patched) refuses nothing: a wait
there yields to the other greenlets. Where we differ: a task run eagerly (``apply()``,
``task_always_eager``) is not refused, since nothing can deadlock there.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from engine import log

MESSAGE = (
    "Never call result.get() within a task: waiting for another task from a worker task can "
    "deadlock the pool. Chain or chord the work instead, or pass disable_sync_subtasks=False "
    "(or wrap the wait in engine.result.allow_join_result()) if you accept the risk."
)

# None: decided by whether a worker task runs in this thread; True/False: forced by the blocks below.
_forced: bool | None = None


def task_join_will_block() -> bool:
    """Whether a wait here is refused: forced by ``denied_join_result``/``allow_join_result``, else
    true inside a task a worker is running (not an eager one, not a direct call)."""
    if _forced is not None:
        return _forced
    request = log.running_request()
    if request is None or request.is_eager or request.called_directly:
        return False
    return not _green()


def _green() -> bool:
    """gevent's monkey-patching is on (``-P gevent``): a blocking wait only parks its greenlet."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("threading"))


def assert_will_not_block() -> None:
    if task_join_will_block():
        raise RuntimeError(MESSAGE)


@contextmanager
def _forcing(value: bool) -> Iterator[None]:
    global _forced
    previous, _forced = _forced, value
    try:
        yield
    finally:
        _forced = previous


def allow_join_result() -> AbstractContextManager[None]:
    """Waits inside the block are allowed, as with Celery's ``allow_join_result()``."""
    return _forcing(False)


def denied_join_result() -> AbstractContextManager[None]:
    """Waits inside the block are refused, as with Celery's ``denied_join_result()``."""
    return _forcing(True)
