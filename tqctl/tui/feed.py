"""Where the console's data comes from: threads that read the cluster and post Messages.

``LiveSource`` runs two loops in Textual thread workers: the event loop (EventReceiver → one
``EventsBatch`` every ``batch_interval``) and the poll loop (Probe → ``SnapshotReady`` every
``snapshot_interval``, with heavier reads every ``slow_every`` polls). Both reconnect with backoff
and report ``FeedStatus``; nothing here touches a widget or the model. History recorded by the
workers is replayed as events when the stream (re)connects, so the past survives the console.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from engine.broker.inspect import NETWORK_ERRORS, is_amqp, open_fanout, state_url
from engine.config import env_backend_url, mask_url, url_host
from engine.redisconn import describe_error, is_redis_error
from tqctl.tui.messages import EventsBatch, FeedStatus, SnapshotReady

Post = Callable[[Any], None]
Cancelled = Callable[[], bool]


def history_events(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Worker history records (newest first) → the task events that would have produced them."""
    out: list[dict[str, Any]] = []
    for rec in reversed(records):
        uid, host = rec.get("id"), rec.get("worker")
        if not uid:
            continue
        finished = rec.get("finished") or rec.get("started") or 0.0
        started = rec.get("started") or finished
        base = {"uuid": uid, "hostname": host, "local_received": finished}
        out.append(
            {
                **base,
                "type": "task-received",
                "timestamp": started,
                "name": rec.get("name"),
                "args": rec.get("args"),
                "kwargs": rec.get("kwargs"),
                "root_id": rec.get("root_id"),
                "parent_id": rec.get("parent_id"),
                "retries": rec.get("retries"),
                "queue": rec.get("queue"),
            }
        )
        state = rec.get("state")
        if state != "REVOKED" or rec.get("started"):  # one revoked before it ran never started
            out.append({**base, "type": "task-started", "timestamp": started})
        if state == "SUCCESS":
            out.append(
                {
                    **base,
                    "type": "task-succeeded",
                    "timestamp": finished,
                    "result": rec.get("result"),
                    "runtime": rec.get("runtime"),
                }
            )
        elif state in ("FAILURE", "RETRY"):
            out.append(
                {
                    **base,
                    "type": "task-failed" if state == "FAILURE" else "task-retried",
                    "timestamp": finished,
                    "exception": rec.get("exception"),
                    "traceback": rec.get("traceback"),
                }
            )
        elif state == "REVOKED":
            out.append({**base, "type": "task-revoked", "timestamp": finished})
    return out


def _sleep(seconds: float, cancelled: Cancelled, wake: threading.Event | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not cancelled() and time.monotonic() < deadline:
        if wake is not None and wake.wait(min(0.1, max(deadline - time.monotonic(), 0))):
            wake.clear()
            return
        if wake is None:
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))


class LiveSource:
    """A real cluster at ``url``. ``app`` (an engine App, optional) adds beat schedules."""

    kind = "live"

    def __init__(
        self,
        url: str,
        app: Any = None,
        app_spec: str | None = None,
        *,
        explicit_url: bool = False,
        batch_interval: float = 0.25,
        snapshot_interval: float = 2.0,
        slow_every: int = 3,
        backfill: int = 1000,
    ) -> None:
        from tqctl.tui.adapter import Adapter
        from tqctl.tui.probe import Probe

        self.url = url
        self.masked_url = mask_url(url)
        self.transport = url.split("://", 1)[0] if "://" in url else "redis"
        # RabbitMQ shows a message only by delivering it: no peeking at a queue there.
        self.can_peek = not is_amqp(url)
        self.app_spec = app_spec
        self.explicit_url = explicit_url
        self.batch_interval = batch_interval
        self.snapshot_interval = snapshot_interval
        self.slow_every = max(1, slow_every)
        self.backfill = backfill
        # Where an AMQP cluster keeps history, failures and revokes: the Redis result backend.
        # (The app's setting, not app.backend_url(): that would start the bundled broker for an app
        # that names none.)
        self.backend_url = (app.conf.result_backend if app is not None else None) or env_backend_url()
        self.adapter = Adapter(url, app, backend_url=self.backend_url)
        self.reader = Probe(url, app, backend_url=self.backend_url)  # on-demand reads from thread workers
        self._poller = Probe(url, app, backend_url=self.backend_url)
        self._wake = threading.Event()
        self._slow_next = True

    @property
    def cli_broker(self) -> str | None:
        """The ``--broker`` value equivalent commands need (masked), when the URL was given explicitly."""
        return self.masked_url if self.explicit_url else None

    def describe(self, exc: BaseException) -> tuple[str, str]:
        """(the one line saying what failed, what it is: "broker" or "result backend").

        On RabbitMQ, history, failures and revokes are read from the Redis result backend: with it
        away and RabbitMQ fine, the console said "cannot reach broker at <RabbitMQ>: Error 111
        connecting to <Redis>", which sent the operator to the wrong server."""
        backend = self.backend_url
        text = " ".join(str(exc).split())
        if text.startswith("cannot reach broker at ") and (not backend or url_host(backend) not in text):
            return text, "broker"  # the engine's own line: wrapped again, the banner said it twice and cut the cause
        if backend and is_amqp(self.url) and (is_redis_error(exc) or url_host(backend) in str(exc)):
            from tqctl.tui.probe import backend_unreachable

            return backend_unreachable(backend, exc), "result backend"
        return describe_error(self.url, exc), "broker"

    def request_snapshot(self, slow: bool = True) -> None:
        self._slow_next = self._slow_next or slow
        self._wake.set()

    def close(self) -> None:
        for part in (self.adapter, self.reader, self._poller):
            try:
                part.close()
            except Exception:  # closing after the broker vanished
                pass

    # -- the event stream -------------------------------------------------------------------------
    def run_events(self, post: Post, cancelled: Cancelled) -> None:
        """Live events, with the recorded history replayed first. On RabbitMQ the history is on the
        Redis result backend: with that away the replay is retried while the events flow (before,
        the whole stream waited for it, so nothing live showed although RabbitMQ was fine)."""
        from engine.events.receiver import EventReceiver

        backoff = 1.0
        while not cancelled():
            receiver = None
            try:
                # subscribe first, then replay: nothing falls in between
                receiver = EventReceiver(self.url, open_fanout(self.url, self.backend_url))
                keeps = bool(self.backfill) and state_url(self.url, self.backend_url) is not None
                missing = self._replay(receiver, post) if keeps else None
                post(FeedStatus(True, source="events", history_missing=missing or ""))
                backoff = 1.0
                self._stream(receiver, post, cancelled, missing)
            except NETWORK_ERRORS as exc:
                error, what = self.describe(exc)
                post(FeedStatus(False, error, backoff, source="events", what=what))
                _sleep(backoff, cancelled)
                backoff = min(backoff * 2, 10.0)
            finally:
                if receiver is not None:
                    try:
                        receiver.close()
                    except Exception:
                        pass

    def _stream(self, receiver: Any, post: Post, cancelled: Cancelled, missing: str | None) -> None:
        """Post events in batches; while ``missing`` (the history could not be read), retry the replay
        with backoff. What was posted live goes first: the model then adds only what the history
        knows beyond it, below the live tasks."""
        pending: list[dict[str, Any]] = []
        last = time.monotonic()
        retry = 1.0
        retry_at = last + retry
        while not cancelled():
            pending.extend(receiver.poll(0.05))
            now = time.monotonic()
            if pending and (now - last >= self.batch_interval or (missing and now >= retry_at)):
                post(EventsBatch(pending, time.time()))
                pending, last = [], now
            if missing and now >= retry_at:
                missing = self._replay(receiver, post)
                retry = min(retry * 2, 10.0)
                retry_at = time.monotonic() + retry
                post(FeedStatus(True, source="events", history_missing=missing or ""))

    def _replay(self, receiver: Any, post: Post) -> str | None:
        """Post the recorded history as a backfill. None when done; else the line saying the Redis
        result backend (AMQP) could not give it. Anything else is the broker's failure: raised."""
        from engine.history import History

        try:
            records = History(receiver.fanout.client).records(self.backfill)
        except NETWORK_ERRORS as exc:
            error, what = self.describe(exc)
            if what != "result backend":
                raise
            return error
        if records:
            post(EventsBatch(history_events(records), time.time(), backfill=True))
        return None

    # -- the poll ---------------------------------------------------------------------------------
    def run_snapshots(self, post: Post, cancelled: Cancelled) -> None:
        backoff = 1.0
        count = 0
        while not cancelled():
            slow = self._slow_next or count % self.slow_every == 0
            self._slow_next = False
            try:
                snap = self._poller.snapshot(slow=slow)
                if cancelled():
                    return
                post(SnapshotReady(snap))
                count += 1
                backoff = 1.0
                wait = self.snapshot_interval
            except NETWORK_ERRORS as exc:
                error, what = self.describe(exc)
                post(FeedStatus(False, error, backoff, source="poll", what=what))
                self._slow_next = True
                wait, backoff = backoff, min(backoff * 2, 10.0)
            _sleep(wait, cancelled, self._wake)
