"""Background upkeep that keeps ownership honest: heartbeats, reaping, due ETAs, late acks,
and handing back what a lost fetch reply left in our in-flight record.

Every worker runs it; each step is one atomic script on the broker, so many workers doing it
at once never move a message twice.

The heartbeat is a lease judged on the broker's clock: a beat that finds its owner gone (it was
reaped while this process was frozen or cut off) starts a new lease *epoch*. A job fetched in the
current epoch while the lease is fresh is provably still ours; any other is checked against the
broker before it starts (the fence in ``Settlement.claim``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine import resp
from engine.exceptions import BrokerUnavailable
from engine.worker.trim import IdleTrim

if TYPE_CHECKING:
    from engine.worker.deadline import Deadline
    from engine.worker.worker import Worker

log = logging.getLogger("engine.worker")
TICK = 0.1  # seconds between upkeep steps (acks, retried settlements, events, due ETAs)
WARN_EVERY = 5.0  # seconds between warnings while the heartbeat keeps failing
LAST_BEAT = 0.5  # seconds each thread gets at a cold stop however late: a broker call in flight ends
RECOVERED = {  # each loop's line when the broker answers it again
    "heartbeat": "owner heartbeat written again",
    "upkeep": "upkeep (acks, events, reaping) reaches the broker again",
}


def lease_span(owner_timeout: float) -> float:
    """How long a heartbeat lets this worker start a late-ack job without asking the broker: half
    the owner timeout, so a job started at its end still has the other half to run and be acked
    before any reaper could take its message back. The broker's own check (``claim``'s ``fresh``)
    uses the same span."""
    return owner_timeout / 2


class Maintenance:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.broker = worker.broker
        self.interval = float(worker.app.conf.tqctl_heartbeat_interval)
        self.owner_timeout = float(worker.app.conf.tqctl_owner_timeout)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, name="maintenance", daemon=True)
        # Beats on a thread and a connection of their own, with a short read timeout: a reply lost
        # on the way (or a slow ack, flush or reap) must not leave the lease unrenewed until this
        # live worker is judged dead. Started by ``run``.
        self.beater = threading.Thread(target=self._beat_loop, name="heartbeat", daemon=True)
        self.beat_timeout = max(min(self.interval, self.owner_timeout / 4), 0.2)
        # The longest normal pause between ownership scripts; longer ones are the broker's stall.
        self.slack = min(2 * self.interval, self.owner_timeout / 3)
        self.epoch = 0
        self._lease_from = float("-inf")  # monotonic time the last confirming beat was sent
        self._next_reap = 0.0
        self._next_due: float | None = 0.0
        self._trim = IdleTrim()  # this process's freed heap back to the system once it idles

    def beat(self) -> None:
        """Announce the owner before it fetches anything, so its messages are always reapable."""
        sent = time.monotonic()  # monotonic keeps counting while this process is stopped
        if not self.broker.heartbeat(self.worker.owner, time.time(), self.slack, self.beat_timeout):
            self.epoch += 1  # before the lease below: a reader that sees the new lease sees this too
        self._lease_from = sent
        self.worker.on_lease(self.epoch, sent + lease_span(self.owner_timeout))

    def lease_holds(self, epoch: int) -> bool:
        """True if nobody can have taken back a message fetched in ``epoch``: the lease was renewed
        well within the owner timeout and never lost since. Reads the lease first (see ``beat``)."""
        fresh = time.monotonic() - self._lease_from < lease_span(self.owner_timeout)
        return fresh and epoch == self.epoch

    def run(self) -> None:
        self.beater.start()
        self._loop(self.step, TICK, "upkeep")

    def _beat_loop(self) -> None:
        self._loop(self.beat, self.interval, "heartbeat")

    def _loop(self, work: Callable[[], bool | None], every: float, what: str) -> None:
        """Run ``work`` every ``every`` seconds, warning while the broker fails it. ``work`` returns
        False when it did not reach the broker this time (an upkeep tick with nothing to send): that
        says nothing about a failure in progress, so no recovery is logged on its word. Before, such
        ticks logged "written again" every second of an outage, between the failure warnings."""
        failing_since: float | None = None
        next_warning = 0.0
        wait = 0.0
        while not self.done.wait(wait):
            try:
                reached = work() is not False
            except (resp.RedisError, BrokerUnavailable, OSError) as exc:
                # A warning, not debug: while the heartbeat fails, after tqctl_owner_timeout other
                # workers take this worker's messages back. Every 5 s at most; retried each tick.
                now = time.monotonic()
                failing_since = failing_since or now
                if now >= next_warning:
                    next_warning = now + WARN_EVERY
                    log.warning(
                        "owner heartbeat and upkeep failing for %.1fs (%s; messages held here are "
                        "reclaimed by other workers after %.0fs): %s",
                        now - failing_since,
                        what,
                        self.owner_timeout,
                        exc,
                    )
                wait = TICK
                continue
            if failing_since is not None and reached:
                log.warning("%s after %.1fs", RECOVERED[what], time.monotonic() - failing_since)
                failing_since, next_warning = None, 0.0
            wait = every

    def step(self) -> bool:
        """One upkeep tick; True when it made the round trip that always reaches the broker (the reap,
        each ``interval``), so a tick that had nothing to send does not pass for a recovery."""
        now = time.time()
        self._trim.tick(sum(self.worker.processed.values()))
        self.worker.settlement.flush_acks()
        self.worker.on_tick(now)
        if self._next_due is not None and self._next_due <= now + TICK:
            _moved, self._next_due = self.broker.promote_due(now)
        if now >= self._next_reap:
            self._next_reap = now + self.interval
            recovered = self.broker.reap(now, self.owner_timeout, self.slack)
            if recovered:
                log.warning("recovered %d message(s) from worker(s) that stopped heartbeating", recovered)
            orphans = self.broker.reconcile(self.worker.owner)
            if orphans:
                log.warning("handed back %d message(s) a failed fetch had moved into our in-flight record", orphans)
            _moved, self._next_due = self.broker.promote_due(now)
            self.worker.on_heartbeat()
            return True
        return False

    def expect_due(self, when: float) -> None:
        """A message was just parked until ``when``: wake for it even if the set looked empty."""
        if self._next_due is None or when < self._next_due:
            self._next_due = when

    def stop(self, deadline: Deadline | None = None) -> None:
        """Both threads end at their next wait. A cold stop's ``deadline`` bounds the joins, but
        each still gets ``LAST_BEAT``: a heartbeat landing after the hand-back would register the
        owner again, as a live worker, until another worker's reaper saw it gone."""
        self.done.set()
        for thread, name in ((self.thread, "the upkeep thread"), (self.beater, "the heartbeat thread")):
            if deadline is not None:
                deadline.join(thread, name, at_least=LAST_BEAT)
            elif thread.is_alive():
                thread.join(2)
