"""The fetch loop: take messages the pool has room for, and sort each one.

Every message ends in exactly one place: the pool, the delayed set (future ETA), the
dead-letter store (cannot run), a held slot (rate limited), or settled at once (expired).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING

from engine import resp, signals
from engine.broker.base import Delivery
from engine.exceptions import BrokerUnavailable, NotRegistered
from engine.protocol import task as protocol
from engine.ratelimit import TokenBucket, parse_rate
from engine.serialization import accepted_types
from engine.worker.job import Job

if TYPE_CHECKING:
    from engine.worker.worker import Worker

log = logging.getLogger("engine.worker")
ETA_SLACK = 0.02  # seconds: an ETA this close is run now rather than parked
ROOM_WAIT = 0.2  # seconds: the longest sleep on a full window before looking at held jobs again
# While jobs still wait locally, the next fetch waits until this many quarters of the prefetch
# window are free. A fetch costs the parent about as much CPU as a task does (the round trip, the
# batch's write to the pool): at half the window (4 of 8 at -c 2) fetching was about a fifth of
# the parent's CPU. The window itself (Celery's prefetch) is unchanged, and a pool whose local
# queue runs dry fetches at once.
REFILL_QUARTERS = 3
GIVE_UP_AFTER = 10  # unexpected fetch-loop errors in a row (about 40 s of backoff) before the worker stops
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 5.0  # seconds between fetch attempts while the broker is away


class Consumer:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.app = worker.app
        self.broker = worker.broker
        self.accepted = accepted_types(self.app.conf.accept_content)
        self.max_bytes = self.app.conf.tqctl_max_message_bytes
        self.signer = self.app.signer  # None unless message signing is on
        self.buckets: dict[str, TokenBucket | None] = {}
        self.rate_share = 1  # a work-sharing child's share of the worker's rate limits: one in N
        self.held: list[tuple[float, int, Job]] = []
        self._held_seq = itertools.count()
        self.capacity = worker.capacity
        self.settlement = worker.settlement
        self._fetching = threading.Lock()  # one fetch-and-sort at a time: ``run`` or ``top_up``
        self.epoch = 0  # the lease epoch read just before the current fetch (jobs carry it)
        self._dry = True  # the last fetch came back short: the queues had no more then
        self._backoff, self._failures = BACKOFF_FIRST, 0  # the fetch loop's, across ``step`` calls
        self.thread = threading.Thread(target=self.run, name="consumer", daemon=True)

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> None:
        """The thread's body. If it ever ends other than by stopping, the worker stops too: a worker
        that heartbeats but no longer fetches would hold its messages forever, unreaped."""
        try:
            self._loop()
        except BaseException:
            log.critical("the consumer thread died; stopping the worker so its messages are handed back", exc_info=True)
            self.worker.request_stop()
            raise

    def _loop(self) -> None:
        while not self.worker.stopping.is_set():
            self.step()

    def step(self) -> None:
        """One pass: wait for room, or fetch (blocking while the queues are empty) and sort.

        The loop of the consumer's thread, or of a work-sharing child's only thread between its
        tasks (``sharing.serve``): a broker error backs off here, so either caller just calls again.
        """
        w = self.worker
        if not w.queues:  # draining or every consumer cancelled
            w.stopping.wait(0.2)
            return
        room = self.capacity.room()
        if room <= 0:
            self.capacity.wait_for_room(ROOM_WAIT)
            with self._fetching:
                self._release_held()
            return
        if self._not_due(room):
            self._wait_for_refill()
            return
        try:
            with self._fetching:
                room = self.capacity.room()  # ``top_up`` may have filled it while we waited for the lock
                if room > 0:
                    self._fetch_and_sort(room, self._block_for())
        except (resp.RedisError, BrokerUnavailable, OSError) as exc:
            log.warning("broker unreachable, retrying in %.1fs: %s", self._backoff, exc)
            self._back_off()
            return
        except Exception:  # a bug, not the broker: keep consuming, but say so loudly
            self._failures += 1
            if self._failures >= GIVE_UP_AFTER:  # stuck for good: stop, so what we hold is handed back
                log.critical("the fetch loop failed %d times in a row; stopping the worker", self._failures)
                w.request_stop()
                return
            log.exception("unexpected error in the fetch loop, retrying in %.1fs", self._backoff)
            self._back_off()
            return
        self._backoff, self._failures = BACKOFF_FIRST, 0

    def _back_off(self) -> None:
        self.worker.stopping.wait(self._backoff)
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    def _fetch_and_sort(self, room: int, block: float) -> int:
        """One fetch (pending acks ride along) and every message sorted; returns how many came."""
        w = self.worker
        acks = self.settlement.acker.take()
        self.epoch = w.maintenance.epoch  # before the fetch: a reap noticed later makes it stale
        try:
            deliveries = self.broker.fetch(w.owner, w.queues, room, block, acks)
        except BaseException:
            self.settlement.acker.put_back(acks)
            raise
        # prefork: the batch's jobs reach the children together (other pools take each as it comes)
        with w.pool.batch() if len(deliveries) > 1 else contextlib.nullcontext():
            for i, delivery in enumerate(deliveries):
                try:
                    self._sort_contained(delivery)
                except BaseException:
                    # A broker error (anything else is contained to its message): this one, unless it
                    # reached the pool, and the rest are recorded as ours but will never be sorted.
                    # The next reconcile (``Maintenance.step``) hands them back.
                    taken = {id(j.delivery) for j in list(w.reserved.values())}
                    self.broker.forsake([d.tag for d in deliveries[i:] if id(d) not in taken])
                    raise
        self._release_held()
        self._dry = len(deliveries) < room
        return len(deliveries)

    def top_up(self) -> None:
        """Fetch the next batch on the thread that just finished a task, while the pool is busy.

        Under load this keeps fetching, sorting and dispatching on the pool's collecting thread,
        with no hand-off to this consumer's thread (two thread switches per task, a fifth of the
        worker's CPU). The consumer's own loop stays for the idle case, where it blocks on the
        broker; when it holds the fetch (blocked there), or nothing came, it is left to it.
        """
        w = self.worker
        room = self.capacity.room()
        if self._not_due(room):
            return  # the pool still has work and a batch would not fit
        fetched = 0
        if room > 0 and w.queues and not w.stopping.is_set() and self._fetching.acquire(blocking=False):
            try:
                fetched = self._fetch_and_sort(room, 0)
            except (resp.RedisError, BrokerUnavailable, OSError) as exc:
                # The consumer's loop retries and backs off; a fetch that ran anyway is handed
                # back by the next reconcile (``Maintenance.step``).
                log.warning("fetch after a finished task failed: %s", exc)
                fetched = 0
            except Exception:  # never into the pool thread that called us
                log.exception("unexpected error fetching more work; the consumer's loop carries on")
                fetched = 0
            finally:
                self._fetching.release()
        if not fetched:
            self.capacity.wake()

    @property
    def refill(self) -> int:
        """Follows the window as ``pool_grow``/``pool_shrink`` and autoscale move it."""
        return max(1, self.capacity.limit * REFILL_QUARTERS // 4)

    def _not_due(self, room: int) -> bool:
        """While jobs wait locally and the queues are deep, fetch in batches of ``refill`` rather
        than one per finished task: one round trip per batch, and the pool never starves (it still
        has work). Once a fetch came back short, messages arriving one by one are fetched as they
        come, so the window fills as Celery's does."""
        return room < self.refill and not self._dry and self.queued()

    def _wait_for_refill(self) -> None:
        self.capacity.wait_while(lambda: self._not_due(self.capacity.room()), max(self._block_for(), 0.01))
        with self._fetching:
            self._release_held()

    def queued(self) -> bool:
        """Jobs handed to the pool that have not started yet (held ones are waiting on a rate)."""
        return len(self.worker.reserved) > len(self.held)

    def _block_for(self) -> float:
        if self.worker.stopping.is_set():
            return 0
        if self.held:
            return max(0.0, min(1.0, self.held[0][0] - time.monotonic()))
        return 1.0

    # -- sorting one message -------------------------------------------------------------------
    def _sort_contained(self, delivery: Delivery) -> None:
        """``sort``, with any error that is not the broker's contained to this one message: it is
        dead-lettered with the error as its reason, and the next message is sorted as usual."""
        try:
            self.sort(delivery)
        except (resp.RedisError, BrokerUnavailable, OSError):
            raise
        except Exception as exc:
            log.exception("could not handle a message from %s", delivery.queue)
            self.worker.forget(delivery.tag)
            headers = protocol.headers_of(delivery.raw)
            self.dead_letter(delivery, "internal_error", f"the worker failed handling it: {exc!r}", headers)

    def sort(self, delivery: Delivery) -> None:
        w = self.worker
        try:
            message = protocol.decode(delivery.raw, self.accepted, self.max_bytes)
        except protocol.MalformedMessage as exc:
            self.dead_letter(delivery, exc.reason, exc.detail, exc.headers)
            signals.task_rejected.send(sender=self, message=delivery, exc=exc)
            return
        if self.signer is not None and (why := self.signer.verify(delivery.raw)) is not None:
            self.dead_letter(delivery, "bad_signature", why, message.headers)
            return
        task = self.app.tasks.get(message.name)
        if task is None:
            self._unknown(delivery, message)
            return
        if w.is_revoked(message.id):
            w.revoked_before_run(delivery, message, "revoked")
            return
        expires = message.expires
        now = time.time()
        if expires is not None and expires.timestamp() < now:
            w.revoked_before_run(delivery, message, "expired")
            return
        eta = message.eta
        if eta is not None and eta.timestamp() > now + ETA_SLACK:
            self.broker.defer(w.owner, delivery.tag, eta.timestamp())
            w.on_deferred(message)
            return
        job = w.make_job(delivery, message, task)
        wait = self._rate_wait(message.name)
        if wait > 0 and self.rate_share > 1:  # a work-sharing child holds no job: it comes back when due
            self.broker.defer(w.owner, delivery.tag, time.time() + wait)
            w.on_deferred(message, time.time() + wait)
            return
        if wait > 0:
            heapq.heappush(self.held, (time.monotonic() + wait, next(self._held_seq), job))
            w.hold(job)
            return
        w.dispatch(job)

    def _rate_wait(self, name: str) -> float:
        if name in self.buckets:
            bucket = self.buckets[name]
        else:
            task = self.app.tasks[name]
            rate = parse_rate(task.rate_limit or self.app.conf.task_default_rate_limit)
            bucket = self.buckets[name] = TokenBucket(rate / self.rate_share) if rate else None
        return bucket.take() if bucket is not None else 0.0

    def set_rate_limit(self, name: str, rate: str | None) -> None:
        value = parse_rate(rate)
        self.buckets[name] = TokenBucket(value / self.rate_share) if value else None

    def _release_held(self) -> None:
        now = time.monotonic()
        while self.held and self.held[0][0] <= now:
            _, _, job = heapq.heappop(self.held)
            wait = self._rate_wait(job.name)
            if wait > 0:
                heapq.heappush(self.held, (now + wait, next(self._held_seq), job))
                break
            self.worker.dispatch(job)

    def take_held(self) -> list[Job]:
        jobs = [job for _, _, job in self.held]
        self.held.clear()
        return jobs

    # -- messages that will not run ------------------------------------------------------------
    def dead_letter(self, delivery: Delivery, reason: str, detail: str, headers: dict | None = None) -> None:
        self.settlement.refuse(delivery, reason, detail, headers)

    def _unknown(self, delivery: Delivery, message: protocol.TaskMessage) -> None:
        self.settlement.unknown(delivery, message)
        signals.task_unknown.send(
            sender=self, message=message, exc=NotRegistered(message.name), name=message.name, id=message.id
        )
