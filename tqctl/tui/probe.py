"""The read side of the engine boundary: what the feed polls and what screens load on demand.

Every method blocks on the network, so it runs only in feed threads or Textual thread workers,
never on the UI thread. Works against any Redis broker, ours (history, dead letters, the delayed
set and beat state exist) or a plain Celery 5 fleet (those parts are simply empty), and RabbitMQ
(history and failures on the Redis result backend). What each transport stores where is known
only to ``engine.broker`` (``ClusterView``, ``connect``, ``open_fanout``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engine.broker.connect import connect
from engine.broker.inspect import NETWORK_ERRORS, is_amqp, open_fanout, open_view
from engine.control import Control, revoked_among
from engine.redisconn import describe_error
from tqctl.tui.model import FAILURES_POLLED
from tqctl.tui.snapshot import ClusterSnapshot, QueueSample, WorkerReply

INSPECT = ("stats", "active", "reserved", "active_queues", "scheduled")


class Probe:
    """Polls one cluster. ``app`` (optional) gives beat entries their schedule and next run."""

    def __init__(self, url: str, app: Any = None, inspect_timeout: float = 1.0, backend_url: str | None = None) -> None:
        self.backend_url = backend_url
        self.url = url
        self.app = app
        self.inspect_timeout = inspect_timeout
        # Everything the transport lays out its own way is behind these: the view (queues, delayed
        # tasks, history, results), the broker (dead letters), the fanout (remote control).
        self.view = open_view(url, backend_url)
        self.broker = connect(url)
        self.control = Control(url, fanout=open_fanout(url, backend_url))
        self.history = self.view.history
        self._expected = 0  # workers that answered last time: lets a broadcast return early
        self._pool = ThreadPoolExecutor(max_workers=len(INSPECT), thread_name_prefix="tqctl-inspect")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.control.close()
        self.broker.close()
        self.view.close()

    # -- the periodic poll ------------------------------------------------------------------------
    def snapshot(self, slow: bool = True) -> ClusterSnapshot:
        """One poll. ``slow`` adds the heavier reads (failure inbox, dead letters, beat, server)."""
        self.view.ping()
        if slow:  # before the queues are measured, so a queue found now is in this poll
            self.view.discover()
        started = time.monotonic()
        futures = {m: self._pool.submit(self._broadcast, m) for m in INSPECT}
        queues = self.queues()
        delayed, delayed_count = self.view.delayed()
        revoked = revoked_among(self.control.fanout, [r["id"] for r in delayed if r.get("id")])
        extra: dict[str, Any] = {}
        if slow:
            extra = self._slow_reads()
        elif self.app is not None:  # the app's entries: one read of their state, cheap every poll
            extra = self._beat_reads()
        answers = {m: f.result() for m, f in futures.items()}
        replies = self._merge(answers, queues)
        return ClusterSnapshot(
            taken_at=time.time(),
            queues=tuple(self._with_consumer_queues(queues, replies)),
            replies=replies,
            delayed=tuple(delayed),
            delayed_count=delayed_count,
            delayed_readable=not is_amqp(self.url),
            delayed_revoked=frozenset(revoked),
            inspect_ms=(time.monotonic() - started) * 1000,
            queue_note=self.view.discovery_error,
            **extra,
        )

    def _beat_reads(self) -> dict[str, Any]:
        """Beat's entries as the app defines them, every poll rather than every third: a 2 s entry
        read every 6 s always showed "due" or "6s late". (Without -A APP, listing the entries is a
        SCAN of the server's keys, which stays in the slow reads.)"""

        def read() -> dict[str, Any]:
            beat, leader, note = self.beat()
            return {"beat": beat, "beat_leader": leader, "beat_note": note}

        return self._stored(read)

    def _stored(self, read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A read of the state AMQP keeps on its Redis result backend (history, failures, beat).
        With that server away, RabbitMQ's queues and workers are still readable: the poll goes
        on without it and says so, instead of failing whole (on Redis it is the broker: it fails)."""
        try:
            return read()
        except NETWORK_ERRORS as exc:
            if not (is_amqp(self.url) and self.backend_url):
                raise
            return {"backend_note": backend_unreachable(self.backend_url, exc)}

    def _slow_reads(self) -> dict[str, Any]:
        server = self.view.server()
        history: dict[str, Any] = {}
        kept = self.history
        if kept is not None:  # (AMQP without a Redis result backend keeps none)

            def read() -> dict[str, Any]:
                failures = [{k: v for k, v in f.items() if k != "raw"} for f in kept.failures(FAILURES_POLLED)]
                return {"failure_groups": tuple(kept.groups()), "failures": tuple(failures)}

            history = self._stored(read)
        return {
            **history,
            "dead_letters": tuple(d.as_dict() for d in self.broker.dead_letters(200)),
            "dead_count": self.broker.dead_letter_count(),
            **self._beat_reads(),
            "server": server,
        }

    def _broadcast(self, method: str) -> list[dict[str, Any]]:
        try:
            return self.control.broadcast(method, timeout=self.inspect_timeout, limit=self._expected or None)
        except Exception:  # a reply we cannot parse must not sink the whole poll
            return []

    def _merge(self, answers: dict[str, list[dict[str, Any]]], queues: list[QueueSample]) -> dict[str, WorkerReply]:
        found: dict[str, dict[str, Any]] = {}
        for method, replies in answers.items():
            for reply in replies:
                for host, body in reply.items():
                    found.setdefault(host, {})[method] = body
        self._expected = len(found)
        out = {}
        for host, data in found.items():
            aq = data.get("active_queues")
            names = (
                [q["name"] for q in aq if isinstance(q, dict) and isinstance(q.get("name"), str)]
                if isinstance(aq, list)
                else None
            )
            out[host] = WorkerReply(
                host,
                stats=data.get("stats") if isinstance(data.get("stats"), dict) else None,
                active=_list(data.get("active")),
                reserved=_list(data.get("reserved")),
                queues=names,
                scheduled=_list(data.get("scheduled")),
            )
        return out

    def _with_consumer_queues(self, queues: list[QueueSample], replies: dict[str, WorkerReply]) -> list[QueueSample]:
        """Add the queues workers consume that the broker did not name (on RabbitMQ: all but the
        default), measured like the others."""
        known = {q.name for q in queues}
        extra = sorted({name for r in replies.values() for name in (r.queues or []) if name and name not in known})
        return queues + [QueueSample(*figures) for figures in self.view.queues(extra)] if extra else queues

    # -- queues -----------------------------------------------------------------------------------
    def queue_names(self) -> list[str]:
        return self.view.queue_names()

    def queues(self) -> list[QueueSample]:
        return [QueueSample(*figures) for figures in self.view.queues(self.view.queue_names())]

    def dead_letter(self, letter_id: str) -> dict[str, Any] | None:
        """One dead letter with its raw message (the list the poll reads leaves the bytes out)."""
        letter = self.broker.dead_letter_get(letter_id)
        return None if letter is None else letter.as_dict(with_raw=True)

    def peek(self, queue: str, limit: int = 100) -> list[dict[str, Any]]:
        """The next messages a worker would take from ``queue``, oldest (next out) first."""
        return self.view.peek(queue, limit)

    def delayed(self, limit: int = 200) -> tuple[list[dict[str, Any]], int]:
        """ETA/countdown tasks parked in the broker, soonest first (none on AMQP: workers hold them)."""
        return self.view.delayed(limit)

    # -- beat -------------------------------------------------------------------------------------
    def beat(self) -> tuple[tuple[dict[str, Any], ...] | None, dict[str, Any] | None, str | None]:
        try:
            from engine.beat import BeatControl
            from engine.beat_store import ENTRY_PREFIX, BeatStore
        except ImportError:
            return None, None, "this engine has no beat module"
        if self.app is not None:
            control = BeatControl(self.app)
            return tuple(control.entries()), control.leader(), None
        if self.view.store is None:
            return None, None, "beat state is kept on a Redis server: start with -A APP"
        store = BeatStore(self.view.store)
        names = sorted(k.decode()[len(ENTRY_PREFIX) :] for k in self.view.store.scan_iter(match=ENTRY_PREFIX + "*"))
        rows = []
        for name, state in store.states(names).items():
            last = state["last_run"]
            rows.append(
                {
                    "name": name,
                    "task": None,
                    "schedule": None,
                    "enabled": state["enabled"],
                    "last_run": last.isoformat() if last else None,
                    "next_run": None,
                    "total_run_count": state["total_run_count"],
                }
            )
        note = "start with -A APP to see schedules and next runs" if rows else None
        return tuple(rows), store.holder(), note

    # -- one task ---------------------------------------------------------------------------------
    def task_detail(self, task_id: str) -> dict[str, Any]:
        """What the broker remembers of one task: stored failure (full original args), history
        records (every run) and the result-backend meta when results live on this server."""
        out: dict[str, Any] = {"id": task_id, "runs": []}
        if self.history is not None:
            out["runs"] = self.history.find(task_id, scan=5000)
            failure = self.history.failure(task_id)
            if failure is not None:
                out["stored"] = True
                out["message"] = decode_message(failure.get("raw", "").encode())
        meta = self.view.result_meta(task_id)
        if meta:
            out["result_meta"] = meta
        elif not out["runs"] and not out.get("stored"):  # no worker recorded it: where is it?
            from tqctl.whereabouts import locate

            parked = self.view.parked(task_id)
            out["whereabouts"] = {"delayed": parked} if parked else locate(self.view, task_id)
        return out


def backend_unreachable(backend_url: str, exc: BaseException) -> str:
    """One line for AMQP's Redis result backend away (history, failures, revokes live there),
    naming that server: "cannot reach broker at <RabbitMQ>" sent operators to the wrong one."""
    cause = str(exc)
    if cause.startswith("cannot reach broker at "):  # already worded against the broker's URL
        cause = cause.split("): ", 1)[-1]
    line = describe_error(backend_url, Exception(cause))
    return line.replace("cannot reach broker at", "cannot reach the Redis result backend at", 1)


def decode_message(raw: bytes) -> dict[str, Any] | None:
    """Full args/kwargs of a stored message (never truncated like event reprs)."""
    from engine.protocol import task as protocol

    try:
        message = protocol.decode(raw, frozenset({"application/json"}))
    except protocol.MalformedMessage:
        return None
    return {
        "name": message.name,
        "args": message.args,
        "kwargs": message.kwargs,
        "queue": message.delivery_info.get("routing_key"),
        "headers": message.headers,
    }


def _list(value: Any) -> list[dict[str, Any]] | None:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else None
