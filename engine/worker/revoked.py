"""The worker's memory of revoked task ids, bounded like Celery's (``LimitedSet``): by size and by age.

Why: revokes reach a worker by broadcast and from the broker's store (kept 3 hours), and a worker lives
for months; an unbounded set would grow with every revoke ever made.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from engine import states
from engine.control import REVOKE_TTL
from engine.protocol.results import meta, revoked_result

if TYPE_CHECKING:
    from engine.protocol.task import TaskMessage

log = logging.getLogger("engine.worker")

MAX_REVOKED = 50_000  # Celery's REVOKES_MAX


class RevokedSet:
    """A set of task ids, each forgotten ``ttl`` seconds after it was first added (``add`` renews it),
    and the oldest forgotten first once there are more than ``maxlen``."""

    def __init__(
        self, maxlen: int = MAX_REVOKED, ttl: float = REVOKE_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.maxlen = maxlen
        self.ttl = ttl
        self._clock = clock
        self._expires: OrderedDict[str, float] = OrderedDict()  # oldest expiry first (ttl is fixed)
        self._lock = threading.Lock()
        self.stamps = RevokedStamps()

    def add(self, task_id: str) -> None:
        """A revoke just made: remembered for a full ``ttl`` from now."""
        with self._lock:
            self._expires[task_id] = self._clock() + self.ttl
            self._expires.move_to_end(task_id)
            self._trim()

    def update(self, task_ids: Iterable[str]) -> None:
        """Revokes read from elsewhere (the broker, another worker): ids already known keep their age."""
        with self._lock:
            expiry = self._clock() + self.ttl
            for task_id in task_ids:
                if task_id not in self._expires:
                    self._expires[task_id] = expiry
            self._trim()

    def _trim(self) -> None:
        now = self._clock()
        entries = self._expires
        while entries and (len(entries) > self.maxlen or next(iter(entries.values())) <= now):
            entries.popitem(last=False)

    def __contains__(self, task_id: object) -> bool:
        with self._lock:
            expiry = self._expires.get(task_id)  # type: ignore[call-overload]
            return expiry is not None and expiry > self._clock()

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            self._trim()
            return iter(list(self._expires))

    def __len__(self) -> int:
        with self._lock:
            self._trim()
            return len(self._expires)

    def why(self, message: TaskMessage, now: float | None = None) -> str | None:
        """Why a message about to run must not: ``"revoked"`` (by id or by a stamp), ``"expired"``, or None.

        Checked again just before a task starts, as Celery's worker does, because a message
        prefetched behind long tasks may expire, or be revoked by stamp, while it waits."""
        if message.id in self or self.stamps.match(message.headers):
            return "revoked"
        expires = message.expires
        if expires is not None and expires.timestamp() < (time.time() if now is None else now):
            return "expired"
        return None


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple, set)) else [value]


class RevokedStamps:
    """Celery's ``revoked_stamps``: stamp values revoked per stamped header (``revoke_by_stamped_headers``).

    Like Celery's, it lives as long as the worker process and is not shared with other workers."""

    def __init__(self) -> None:
        self._values: dict[str, list[Any]] = {}
        self._lock = threading.Lock()

    def add(self, headers: dict[str, Any]) -> None:
        with self._lock:
            for header, values in headers.items():
                self._values[header] = self._values.get(header, []) + _as_list(values)

    def as_dict(self) -> dict[str, list[Any]]:
        with self._lock:
            return {k: list(v) for k, v in self._values.items()}

    def match(self, headers: dict[str, Any] | None, wanted: dict[str, Any] | None = None) -> dict[str, set[Any]]:
        """``{header: matching values}`` of a message's stamps against ``wanted`` (default: every revoked stamp)."""
        headers = headers or {}
        stamped = headers.get("stamped_headers") or ()
        if not stamped:
            return {}
        revoked = self.as_dict() if wanted is None else {k: _as_list(v) for k, v in wanted.items()}
        stamps = headers.get("stamps") or {}
        found: dict[str, set[Any]] = {}
        for header in stamped:
            if header not in revoked:
                continue
            value = stamps.get(header, headers.get(header))
            if value is None:
                continue
            hits = {v for v in _as_list(value) if _hashable(v) and v in revoked[header]}
            if hits:
                found[header] = hits
        return found


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


# States a revoke may overwrite: the task has not started anywhere (or is waiting to run again).
NOT_STARTED = frozenset({states.PENDING, states.RECEIVED, states.RETRY, states.REJECTED})


def mark_revoked(backend: Any, task_ids: Iterable[str], active: Collection[str]) -> list[str]:
    """Store REVOKED for revoked tasks that have not started, as Celery 5.7's ``revoke`` does.

    Why at once, not when the message arrives: a client waiting on ``result.get()`` learns of the
    revoke even while the message sits behind others in the queue (or on no worker at all). A task
    running here, one already finished, or one another worker started (STARTED, or a custom state
    such as PROGRESS) keeps its state: the worker running it has the last word. Returns the ids marked.
    """
    marked: list[str] = []
    if backend is None:
        return marked
    for task_id in task_ids:
        if task_id in active:
            continue
        try:
            stored = backend.get_meta(task_id) or {}
            if stored.get("status", states.PENDING) not in NOT_STARTED:
                continue
            backend.store(task_id, meta(task_id, states.REVOKED, revoked_result("revoked")))
            marked.append(task_id)
        except Exception as exc:  # noqa: BLE001 - a backend hiccup must not lose the revoke itself
            log.warning("could not mark task %s as revoked in the result backend: %s", task_id, exc)
    return marked
