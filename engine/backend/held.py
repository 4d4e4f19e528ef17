"""Results written behind: a work-sharing child's plain successes, stored several to a write.

A child that waits for each result's round trip spends as much time on the store as on a no-op
task (a send that wakes the server, a read that sleeps until the reply). Held results go out
together, in one write, before anything depends on them: before the acks of their messages
(``Settlement.release_held``), before the events that announce them, and before the child waits
for work. A message stays in the worker's in-flight record until its result is stored, so a
child that dies holding results has their tasks run again; one the store refuses for longer than
``tqctl_result_retry_timeout`` goes to the dead-letter store (``result_not_stored``), as a
result stored at once would.

Only results nothing else reads before they are stored are held (``engine.trace``'s
``_may_hold``): a late-acked task's SUCCESS with no callbacks, chain or chord, whose task keeps
Celery's own ``on_success``/``after_return``, with no ``task_success`` receiver.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from engine.backend.retry import patiently
from engine.exceptions import BackendStoreError

if TYPE_CHECKING:
    from engine.backend.redis import RedisBackend

log = logging.getLogger("engine.worker")
HOLD_MOST = 8  # results held before they are written without waiting for another reason


class HeldResults:
    def __init__(self, backend: RedisBackend, retry_timeout: float) -> None:
        self.backend = backend
        self.retry_timeout = retry_timeout
        self._items: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()

    def hold(self, task_id: str, meta: dict[str, Any]) -> None:
        packed = self.backend.packed_store(task_id, meta)
        with self._lock:
            self._items.append((task_id, packed))

    def write(self) -> dict[str, str]:
        """Write every held result in one go; returns why each result not stored was not: refused
        by the store, or all of them when it stayed unreachable past ``retry_timeout`` (retried
        with backoff until then, as one result is: ``patiently``)."""
        with self._lock:
            items, self._items = self._items, []
        if not items:
            return {}
        try:
            errors = patiently(lambda: self.backend.send_stores([p for _, p in items]), self.retry_timeout)
        except BackendStoreError as exc:
            log.error("%d result(s) not stored: %s", len(items), exc)
            return {task_id: str(exc) for task_id, _ in items}
        refused = {
            task_id: f"the result store refused it ({error})"
            for (task_id, _), error in zip(items, errors, strict=True)
            if error is not None
        }
        if refused:
            log.error("%d result(s) refused by the result store: %s", len(refused), next(iter(refused.values())))
        return refused
