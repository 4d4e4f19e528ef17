"""A bounded record of what ran, kept in the broker so a console that attaches late sees it.

Events are fire-and-forget; this is the memory. Workers append one record per task run (in
batches, off the hot path) and keep each failure's *original message*, grouped by
fingerprint (task + exception type + normalised message), so a retry republishes exactly
what was sent rather than a truncated repr.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from engine import resp
from engine.backlog import put_back
from engine.protocol import task as protocol
from engine.redisconn import as_text
from engine.serialization import json_dumps

log = logging.getLogger(__name__)
RECORDS = "tqctl.history"
FAILURES = "tqctl.failures"
FAILURE_INDEX = "tqctl.failures.index"
GROUPS = "tqctl.failure.groups"
_NUMBERS = re.compile(r"\b0x[0-9a-f]+\b|\b[0-9a-f]{8}-[0-9a-f-]{27}\b|\d+(\.\d+)?", re.IGNORECASE)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def fingerprint(name: str, exc_type: str, message: str) -> str:
    """Stable id for 'the same failure': numbers, ids and quoted values don't split groups."""
    normal = _QUOTED.sub("'…'", _NUMBERS.sub("N", message or ""))[:200]
    return hashlib.sha1(f"{name}|{exc_type}|{normal}".encode()).hexdigest()[:12]


def split_exception(text: str | None) -> tuple[str, str]:
    """``ValueError('boom')`` → (``ValueError``, ``boom``)."""
    if not text:
        return "", ""
    kind, _, rest = text.partition("(")
    message = rest[:-1] if rest.endswith(")") else rest
    if len(message) >= 2 and message[0] == message[-1] and message[0] in "'\"":
        message = message[1:-1]
    return kind.strip(), message


class HistoryWriter:
    """Buffers records from any worker thread; ``flush`` writes them in one pipeline."""

    def __init__(self, client: resp.Client | None, keep: int = 10_000, keep_failures: int = 10_000) -> None:
        self.client = client
        self.keep = keep
        self.keep_failures = keep_failures
        self._records: list[str] = []
        self._failures: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()

    def record(self, record: dict[str, Any], raw: bytes | None = None) -> None:
        """Keep one run's record; ``finished`` is stamped here, under the lock, so the history's
        order (newest first) is the order of the stamps even when threads finish close together."""
        line = json_dumps(record)[:-1]  # without its closing brace: "finished" goes last
        with self._lock:
            finished = time.time()
            self._records.append(f'{line}, "finished": {finished!r}}}')
            if record.get("state") == "FAILURE" and raw is not None:
                self._failures.append({**record, "finished": finished, "raw": raw.decode("utf-8", "replace")})

    def flush(self) -> None:
        """Write what was recorded; when it returns, every record made before the call is stored.

        Flushes are one at a time so that promise holds for a caller that finds the buffer
        emptied by a flush still on its way (the worker's events wait on it).
        """
        with self._flushing:
            with self._lock:
                records, self._records = self._records, []
                failures, self._failures = self._failures, []
            if not records or self.client is None:  # None: nowhere to keep it (AMQP with rpc://)
                return
            pipe = self.client.pipeline(transaction=False)
            pipe.lpush(RECORDS, *records)
            pipe.ltrim(RECORDS, 0, self.keep - 1)
            for failure in failures:
                self._add_failure(pipe, failure)
            if failures:
                pipe.zremrangebyrank(FAILURE_INDEX, 0, -self.keep_failures - 1)
            try:
                pipe.execute()
            except Exception:
                self._keep(records, failures)
                raise

    def _keep(self, records: list[str], failures: list[dict[str, Any]]) -> None:
        """What the broker did not take goes back ahead of newer records for the next flush: a
        broker restart no longer loses the records (and failed messages) of the tasks that finished
        during it. At most ``keep`` records and ``keep_failures`` failures wait; the oldest go first.
        A failure written twice (a reply lost after the write) is the same hash entry; its group's
        count may then be one too high."""
        with self._lock:
            self._records, dropped = put_back(records, self._records, self.keep)
            self._failures, _ = put_back(failures, self._failures, self.keep_failures)
        if dropped > 0:
            log.warning("dropped %d history record(s) the broker could not take (kept the last %d)", dropped, self.keep)

    def _add_failure(self, pipe: resp.Pipeline, failure: dict[str, Any]) -> None:
        exc_type, message = split_exception(failure.get("exception"))
        fp = fingerprint(failure.get("name") or "", exc_type, message)
        failure.update(fingerprint=fp, exc_type=exc_type, exc_message=message)
        now = failure.get("finished") or time.time()
        pipe.hset(FAILURES, failure["id"], json_dumps(failure))
        pipe.zadd(FAILURE_INDEX, {failure["id"]: now})
        pipe.hincrby(f"{GROUPS}.count", fp, 1)
        pipe.hsetnx(f"{GROUPS}.first", fp, now)
        pipe.hset(f"{GROUPS}.last", fp, now)
        pipe.hset(
            f"{GROUPS}.meta",
            fp,
            json_dumps({"name": failure.get("name"), "exc_type": exc_type, "sample": message[:300]}),
        )


@dataclass
class History:
    """Reading (and acting on) what the workers recorded."""

    client: resp.Client

    def records(self, limit: int = 1000) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.client.lrange(RECORDS, 0, max(limit, 1) - 1)]

    def find(self, task_id: str, scan: int = 10_000) -> list[dict[str, Any]]:
        """Every recorded run of ``task_id``, newest first (retries give several)."""
        return [r for r in self.records(scan) if r.get("id") == task_id]

    def failure(self, task_id: str) -> dict[str, Any] | None:
        data = self.client.hget(FAILURES, task_id)
        return json.loads(data) if data else None

    def failures(self, limit: int = 1000) -> list[dict[str, Any]]:
        ids = [as_text(i) for i in self.client.zrevrange(FAILURE_INDEX, 0, limit - 1)]
        if not ids:
            return []
        return [json.loads(d) for d in self.client.hmget(FAILURES, ids) if d]

    def groups(self) -> list[dict[str, Any]]:
        counts = self.client.hgetall(f"{GROUPS}.count")
        first = self.client.hgetall(f"{GROUPS}.first")
        last = self.client.hgetall(f"{GROUPS}.last")
        meta = self.client.hgetall(f"{GROUPS}.meta")
        live: dict[str, int] = {}
        for failure in self.failures(100_000):
            live[failure["fingerprint"]] = live.get(failure["fingerprint"], 0) + 1
        rows = []
        for fp, count in counts.items():
            key = as_text(fp)
            info = json.loads(meta.get(fp, b"{}"))
            rows.append(
                {
                    "fingerprint": key,
                    "task_name": info.get("name"),
                    "exc_type": info.get("exc_type"),
                    "sample": info.get("sample"),
                    "count": int(count),
                    "open": live.get(key, 0),
                    "first_seen": float(first.get(fp, 0)),
                    "last_seen": float(last.get(fp, 0)),
                }
            )
        return sorted(rows, key=lambda r: r["last_seen"], reverse=True)

    def retry(self, task_id: str, publish: Any, sent_at: float | None = None) -> str:
        """Republish a failed task's original message under a new id linked to the old one.

        ``publish(queue, raw, priority)`` is the broker's publish; ``sent_at`` (default now) is the
        new message's send time. Returns the new task id.
        """
        failure = self.failure(task_id)
        if failure is None:
            raise KeyError(task_id)
        raw = failure["raw"].encode()
        message = protocol.decode(raw, frozenset({"application/json"}))
        new_id = protocol.new_id()
        envelope = json.loads(raw)
        # A fresh send: no ETA, no expiry that passed while it sat in the inbox, and its own sent_at
        # (queue age reads it).
        envelope["headers"].update(
            id=new_id,
            retries=0,
            retry_of=task_id,
            eta=None,
            expires=None,
            sent_at=round(time.time() if sent_at is None else sent_at, 3),
        )
        envelope["headers"]["root_id"] = envelope["headers"].get("root_id") or task_id
        props = envelope.setdefault("properties", {})
        props.update(correlation_id=new_id, delivery_tag=protocol.new_id())
        props.pop("expiration", None)
        queue = message.delivery_info.get("routing_key") or failure.get("queue") or "celery"
        publish(queue, json_dumps(envelope).encode(), props.get("priority"))
        pipe = self.client.pipeline(transaction=False)
        pipe.hdel(FAILURES, task_id)
        pipe.zrem(FAILURE_INDEX, task_id)
        pipe.execute()
        return new_id

    def delete_failure(self, task_id: str) -> bool:
        pipe = self.client.pipeline(transaction=False)
        pipe.hdel(FAILURES, task_id)
        pipe.zrem(FAILURE_INDEX, task_id)
        return bool(pipe.execute()[0])

    def forget_group(self, fingerprint: str) -> bool:
        """Drop a failure group's counters once none of its failures is left in the inbox."""
        if self.client.zcard(FAILURE_INDEX) and any(
            f.get("fingerprint") == fingerprint for f in self.failures(100_000)
        ):
            return False
        pipe = self.client.pipeline(transaction=False)
        for part in ("count", "first", "last", "meta"):
            pipe.hdel(f"{GROUPS}.{part}", fingerprint)
        pipe.execute()
        return True
