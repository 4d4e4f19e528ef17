"""The parent's view of work-sharing children (``engine.worker.sharing``): what they hold, read
from the shared slot table, and the orders sent to each of them.

The worker asks its pool for this object (``Pool.shared``: None for every pool whose jobs pass
through the worker's own books) rather than asking each pool whether its children fetch for
themselves and then calling methods only that one pool has.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.worker.child import dumps
from engine.worker.slots import RUNNING, SHARED, TAKEN, Slots

if TYPE_CHECKING:
    from engine.worker.job import Job
    from engine.worker.prefork import Child


class SharedBooks:
    """Counts and books of the children's jobs, and their inboxes. ``children`` gives the pool's
    children as they are now (a copy taken under the pool's lock)."""

    def __init__(self, host: Any, slots: Slots, children: Callable[[], list[Child]]) -> None:
        self.host = host
        self.slots = slots
        self.children = children

    def tell(self, order: Any) -> None:
        """An order on each child's inbox (revokes, the state remote commands change)."""
        data = dumps(order)
        for child in self.children():
            with contextlib.suppress(OSError, ValueError):
                child.inbox.send_bytes(data)

    def counts(self) -> tuple[int, int]:
        """(reserved, running): slots fetched but not started, and slots running."""
        reserved = running = 0
        for held in self.slots.held():
            if held.state == RUNNING:
                running += 1
            elif held.state in (SHARED, TAKEN):
                reserved += 1
        return reserved, running

    def running(self) -> int:
        return sum(1 for held in self.slots.held() if held.state == RUNNING)

    def books(self) -> tuple[dict[str, Job], dict[str, Job]]:
        """(active, reserved) as the children hold them, each job read back from the in-flight
        record (or, for an early-acked running task, from what its child kept)."""
        from engine.worker.sharing import rebuild_job

        active: dict[str, Job] = {}
        reserved: dict[str, Job] = {}
        lanes = {c.pid: c.lane for c in self.children()}
        for held in self.slots.held():
            if held.state not in (RUNNING, SHARED, TAKEN):
                continue
            lane = lanes.get(held.pid)
            kept = self.slots.running_message(lane) if held.state == RUNNING and lane is not None else None
            job = rebuild_job(self.host, held.tag, book=False, kept=kept)
            if job is None:
                continue
            if held.state == RUNNING:
                job.worker_pid, job.time_start = held.pid, held.started or None
                active[job.id] = job
            else:
                reserved[job.id] = job
        return active, reserved
