"""The read side of the engine boundary: what the feed polls and what screens load on demand.

Every method blocks on the network, so it runs only in feed threads or Textual thread workers,
never on the UI thread. Works against any Redis broker: ours (history, dead letters, the delayed
set and beat state exist) or a plain Celery 5 fleet (those parts are simply empty).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engine.broker.redis import DELAYED, SEP, RedisBroker
from engine.control import Control
from engine.history import History
from engine.protocol.task import PRIORITY_SEP, PRIORITY_STEPS, priority_key
from engine.redisconn import as_bytes
from tqctl.tui.model import FAILURES_POLLED
from tqctl.tui.snapshot import ClusterSnapshot, QueueSample, WorkerReply

BINDING_PREFIX = "_kombu.binding."
SKIP_EXCHANGES = frozenset({"celeryev", "celery.pidbox", "reply.celery.pidbox"})
INSPECT = ("stats", "active", "reserved", "active_queues", "scheduled")
RESULT_PREFIX = "celery-task-meta-"


def envelope_headers(raw: bytes) -> dict[str, Any]:
    """Headers and a few properties of a queued message, without decoding its body."""
    try:
        envelope = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {"_error": "not JSON"}
    if not isinstance(envelope, dict):
        return {"_error": "not an object"}
    headers = envelope.get("headers") or {}
    props = envelope.get("properties") or {}
    out = dict(headers) if isinstance(headers, dict) else {}
    if isinstance(props, dict):
        out.setdefault("priority", props.get("priority"))
    out["_size"] = len(raw)
    return out


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class Probe:
    """Polls one cluster. ``app`` (optional) gives beat entries their schedule and next run."""

    def __init__(self, url: str, app: Any = None, inspect_timeout: float = 1.0) -> None:
        self.url = url
        self.app = app
        self.inspect_timeout = inspect_timeout
        self.broker = RedisBroker(url)
        self.client = self.broker.client
        self.control = Control(url)
        self.history = History(self.client)
        self._expected = 0  # workers that answered last time: lets a broadcast return early
        self._seen_lists: set[str] = set()  # queues found by scanning list keys (no binding: nobody declared them)
        self._pool = ThreadPoolExecutor(max_workers=len(INSPECT), thread_name_prefix="tqctl-inspect")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.control.close()
        self.broker.close()

    # -- the periodic poll ------------------------------------------------------------------------
    def snapshot(self, slow: bool = True) -> ClusterSnapshot:
        """One poll. ``slow`` adds the heavier reads (failure inbox, dead letters, beat, server)."""
        self.client.ping()
        started = time.monotonic()
        futures = {m: self._pool.submit(self._broadcast, m) for m in INSPECT}
        queues = self.queues()
        delayed, delayed_count = self.delayed()
        extra: dict[str, Any] = {}
        if slow:
            extra = self._slow_reads()
        answers = {m: f.result() for m, f in futures.items()}
        replies = self._merge(answers, queues)
        return ClusterSnapshot(
            taken_at=time.time(),
            queues=tuple(self._with_consumer_queues(queues, replies)),
            replies=replies,
            delayed=tuple(delayed),
            delayed_count=delayed_count,
            inspect_ms=(time.monotonic() - started) * 1000,
            **extra,
        )

    def _slow_reads(self) -> dict[str, Any]:
        self._scan_lists()
        failures = [{k: v for k, v in f.items() if k != "raw"} for f in self.history.failures(FAILURES_POLLED)]
        beat, leader, note = self.beat()
        info = self.client.info("server")
        kind = "valkey" if "valkey_version" in info else "redis"
        server = f"{kind} {info.get('valkey_version') or info.get('redis_version', '?')}"
        return {
            "failure_groups": tuple(self.history.groups()),
            "failures": tuple(failures),
            "dead_letters": tuple(d.as_dict() for d in self.broker.dead_letters(200)),
            "dead_count": self.broker.dead_letter_count(),
            "beat": beat,
            "beat_leader": leader,
            "beat_note": note,
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

    @staticmethod
    def _with_consumer_queues(queues: list[QueueSample], replies: dict[str, WorkerReply]) -> list[QueueSample]:
        known = {q.name for q in queues}
        extra = sorted({name for r in replies.values() for name in (r.queues or []) if name and name not in known})
        return queues + [QueueSample(name, 0) for name in extra]

    # -- queues -----------------------------------------------------------------------------------
    def _scan_lists(self) -> None:
        """Queues nobody declared (a client published to a queue no worker consumes) exist only as
        lists: find them by type, skipping our own bookkeeping and kombu's reply queues."""
        try:
            keys = self.client.scan_iter(count=1000, _type="list")
            for key in keys:
                name = key.decode(errors="replace").split(PRIORITY_SEP)[0]
                if not name.startswith(("tqctl.", "_kombu.", "celery-task-meta", "celeryev")) and "pidbox" not in name:
                    self._seen_lists.add(name)
        except Exception:  # SCAN TYPE needs Redis 6; without it only declared queues are listed
            pass

    def queue_names(self) -> list[str]:
        names: set[str] = set(self._seen_lists)
        keys = [k for k in self.client.scan_iter(match=BINDING_PREFIX + "*", count=1000)]
        exchanges = [k.decode()[len(BINDING_PREFIX) :] for k in keys]
        pipe = self.client.pipeline(transaction=False)
        wanted = [e for e in exchanges if e not in SKIP_EXCHANGES and "pidbox" not in e]
        for exchange in wanted:
            pipe.smembers(BINDING_PREFIX + exchange)
        for members in pipe.execute():
            for member in members:
                queue = member.decode(errors="replace").split(PRIORITY_SEP)[-1]
                if queue and not queue.startswith("celeryev.") and "pidbox" not in queue:
                    names.add(queue)
        return sorted(names)

    def queues(self) -> list[QueueSample]:
        names = self.queue_names()
        if not names:
            return []
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            for step in PRIORITY_STEPS:
                key = priority_key(name, step)
                pipe.llen(key)
                pipe.lindex(key, -1)  # LPUSH publishes, consumers pop from the right: -1 is the oldest
        flat = pipe.execute()
        out = []
        per = 2 * len(PRIORITY_STEPS)
        for i, name in enumerate(names):
            chunk = flat[i * per : (i + 1) * per]
            depth = sum(int(n) for n in chunk[0::2])
            sent = [_float(envelope_headers(raw).get("sent_at")) for raw in chunk[1::2] if raw]
            known = [s for s in sent if s is not None]
            out.append(QueueSample(name, depth, min(known) if known else None))
        return out

    def peek(self, queue: str, limit: int = 100) -> list[dict[str, Any]]:
        """The next messages a worker would take from ``queue``, oldest (next out) first."""
        rows: list[dict[str, Any]] = []
        for step in PRIORITY_STEPS:
            key = priority_key(queue, step)
            for raw in reversed(self.client.lrange(key, -limit, -1)):
                headers = envelope_headers(as_bytes(raw))
                rows.append(
                    {
                        "id": headers.get("id"),
                        "name": headers.get("task"),
                        "args": headers.get("argsrepr"),
                        "kwargs": headers.get("kwargsrepr"),
                        "eta": headers.get("eta"),
                        "sent_at": _float(headers.get("sent_at")),
                        "priority": step,
                        "retries": headers.get("retries"),
                        "origin": headers.get("origin"),
                        "size": headers.get("_size"),
                        "error": headers.get("_error"),
                    }
                )
                if len(rows) >= limit:
                    return rows
        return rows

    def delayed(self, limit: int = 200) -> tuple[list[dict[str, Any]], int]:
        """ETA/countdown tasks parked in the broker's delayed set, soonest first."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zrange(DELAYED, 0, limit - 1, withscores=True)
        pipe.zcard(DELAYED)
        members, total = pipe.execute()
        rows = []
        for member, score in members:
            key, _, raw = member.partition(SEP.encode())
            headers = envelope_headers(raw)
            rows.append(
                {
                    "id": headers.get("id"),
                    "name": headers.get("task"),
                    "eta": float(score),
                    "queue": key.decode(errors="replace").split(PRIORITY_SEP)[0],
                    "args": headers.get("argsrepr"),
                    "kwargs": headers.get("kwargsrepr"),
                }
            )
        return rows, int(total)

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
        store = BeatStore(self.client)
        names = sorted(k.decode()[len(ENTRY_PREFIX) :] for k in self.client.scan_iter(match=ENTRY_PREFIX + "*"))
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
        out: dict[str, Any] = {"id": task_id, "runs": self.history.find(task_id, scan=5000)}
        failure = self.history.failure(task_id)
        if failure is not None:
            out["stored"] = True
            out["message"] = decode_message(failure.get("raw", "").encode())
        meta = self.client.get(RESULT_PREFIX + task_id)
        if meta:
            try:
                out["result_meta"] = json.loads(meta)
            except ValueError:
                out["result_meta"] = {"raw": as_bytes(meta).decode(errors="replace")}
        return out


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
