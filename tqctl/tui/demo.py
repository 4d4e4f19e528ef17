"""A deterministic cluster for screenshots, snapshot tests and ``tqctl console --demo``.

Fixed clock (``NOW``), seeded ids, recorded-looking events and one poll's worth of snapshot data:
the same input gives byte-identical screens. ``DemoAdapter`` answers actions without a network,
so every dialog and notification can be exercised (nothing is sent anywhere).
"""

from __future__ import annotations

import base64
import json
import math
import random
import uuid
from typing import Any

from engine.history import fingerprint, split_exception
from tqctl.tui.snapshot import ClusterSnapshot, QueueSample, WorkerReply

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
SEED = 20270115
W1, W2, LEGACY, W3 = "w1@shop-01", "w2@shop-02", "celery@legacy-01", "w3@shop-03"
NAMES = ("shop.process_order", "shop.reserve_stock", "shop.send_receipt", "shop.charge", "shop.refund")
CHARGE_EXC = "PaymentDeclined('card ending 4242 declined by gateway (order {n})')"
REFUND_EXC = "RuntimeError('refund window closed for order {n}')"
TRACE = (
    'Traceback (most recent call last):\n  File "/srv/shop/tasks.py", line 88, in charge\n'
    '    gateway.capture(order_id, amount)\n  File "/srv/shop/gateway.py", line 41, in capture\n'
    "    raise PaymentDeclined(f'card ending {{card}} declined by gateway (order {{order_id}})')\n"
    "shop.errors.{exc}\n"
)


class Recorder:
    def __init__(self) -> None:
        self.rng = random.Random(SEED)
        self.events: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.running: list[str] = []

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def emit(self, etype: str, host: str, ts: float, **fields: Any) -> None:
        self.events.append(
            {
                "type": etype,
                "hostname": host,
                "timestamp": ts,
                "local_received": ts + 0.004,
                "utcoffset": 0,
                "pid": 4242 if host == W1 else 5151,
                "clock": len(self.events),
                **fields,
            }
        )

    def task(
        self,
        name: str,
        ts: float,
        host: str,
        state: str,
        *,
        args: str = "()",
        kwargs: str = "{}",
        runtime: float = 0.05,
        queue: str = "celery",
        parent: str | None = None,
        root: str | None = None,
        exc: str | None = None,
        result: str | None = None,
        task_id: str | None = None,
    ) -> str:
        uid = task_id or self.uid()
        common = {"uuid": uid}
        self.emit(
            "task-sent",
            "gen77@shop-web-1",
            ts - 0.02,
            name=name,
            args=args,
            kwargs=kwargs,
            queue=queue,
            routing_key=queue,
            root_id=root or uid,
            parent_id=parent,
            retries=0,
            eta=None,
            expires=None,
            **common,
        )
        if state == "PENDING":
            return uid
        self.emit(
            "task-received",
            host,
            ts,
            name=name,
            args=args,
            kwargs=kwargs,
            root_id=root or uid,
            parent_id=parent,
            retries=0,
            eta=None,
            expires=None,
            queue=queue,
            **common,
        )
        if state == "RECEIVED":
            return uid
        if state == "REVOKED":
            self.emit("task-revoked", host, ts + 0.01, terminated=False, signum=None, expired=False, **common)
            return uid
        self.emit("task-started", host, ts + 0.002, **common)
        end = ts + 0.002 + runtime
        if state == "SUCCESS":
            self.emit("task-succeeded", host, end, result=result or "None", runtime=runtime, **common)
        elif state == "RETRY":
            self.emit("task-retried", host, end, exception=exc, traceback=TRACE.format(exc=exc), **common)
        elif state == "FAILURE":
            self.emit("task-failed", host, end, exception=exc, traceback=TRACE.format(exc=exc), **common)
            kind, message = split_exception(exc)
            self.failures.append(
                {
                    "id": uid,
                    "name": name,
                    "state": "FAILURE",
                    "exception": exc,
                    "worker": host,
                    "queue": queue,
                    "finished": end,
                    "fingerprint": fingerprint(name, kind, message),
                    "exc_type": kind,
                    "exc_message": message,
                    "args": args,
                    "kwargs": kwargs,
                    "root_id": root or uid,
                    "parent_id": parent,
                    "retries": 0,
                    "runtime": runtime,
                }
            )
        return uid


def record() -> Recorder:
    rec = Recorder()
    rng = rec.rng
    rec.emit("worker-online", W3, NOW - 2400, freq=2.0, active=0, processed=0, sw_ident="py-tqctl", sw_ver="0.1.0")
    rec.emit("worker-offline", W3, NOW - 1200, freq=2.0, active=0, processed=4211, sw_ident="py-tqctl", sw_ver="0.1.0")
    order = 9000
    for sec in range(60, 0, -1):  # a minute of traffic: busier in the middle, a failure burst at -20 s
        start = NOW - sec
        per_second = int(6 + 5 * math.sin(sec / 9.0) + rng.random() * 3)
        for i in range(per_second):
            ts = start + i / max(per_second, 1)
            host = W1 if (i + sec) % 3 else W2
            order += 1
            name = NAMES[(order * 7) % 3]
            failed = 18 <= sec <= 22 and i % 3 == 0 or sec == 45 and i == 0
            if failed:
                rec.task("shop.charge", ts, host, "FAILURE", args=f"({order}, 4999)", exc=CHARGE_EXC.format(n=order))
            else:
                rec.task(
                    name,
                    ts,
                    host,
                    "SUCCESS",
                    args=f"({order},)",
                    runtime=0.02 + rng.random() * 0.3,
                    result=repr({"order": order, "ok": True}) if name == "shop.process_order" else "None",
                )
    for n in (812, 815, 990):
        rec.task("shop.refund", NOW - 300 - n / 10, W2, "FAILURE", args=f"({n},)", exc=REFUND_EXC.format(n=n))
    root = rec.task(
        "shop.checkout", NOW - 6.0, W1, "SUCCESS", args="(10422,)", kwargs="{'express': True}", result="'chord started'"
    )
    charge = rec.task(
        "shop.charge",
        NOW - 5.8,
        W1,
        "SUCCESS",
        args="(10422, 12900)",
        parent=root,
        root=root,
        result="{'captured': 12900}",
    )
    for item in ("A-1", "B-7", "C-3"):
        rec.task("shop.reserve_stock", NOW - 5.7, W2, "SUCCESS", args=f"(10422, '{item}')", parent=root, root=root)
    rec.running = [
        rec.task("shop.send_receipt", NOW - 5.5, W1, "STARTED", args="(10422,)", parent=charge, root=root, runtime=99),
        rec.task(
            "shop.export_report",
            NOW - 41,
            W1,
            "STARTED",
            args="('2027-01',)",
            kwargs="{'format': 'xlsx'}",
            queue="high",
            runtime=999,
        ),
        rec.task("shop.reserve_stock", NOW - 0.4, W2, "STARTED", args="(10439, 'D-2')", runtime=99),
    ]
    rec.task("shop.charge", NOW - 3, W2, "RETRY", args="(10431, 2500)", exc="GatewayTimeout('gateway timed out')")
    rec.task("shop.send_receipt", NOW - 2, W2, "REVOKED", args="(10398,)")
    for n in range(3):
        rec.task("shop.process_order", NOW - 1 + n * 0.1, W2, "RECEIVED", args=f"({10440 + n},)")
    rec.task("shop.send_newsletter", NOW - 0.5, W1, "PENDING", args="('january',)", queue="emails")
    for host, active, processed, load in ((W1, 2, 48213, 1.42), (W2, 1, 47990, 0.97)):
        rec.emit(
            "worker-heartbeat",
            host,
            NOW - 11,
            freq=2.0,
            active=active,
            processed=processed - 61,
            loadavg=[load, 1, 1],
            sw_ident="py-tqctl",
            sw_ver="0.1.0",
            sw_sys="Linux",
        )
        rec.emit(
            "worker-heartbeat",
            host,
            NOW - 1,
            freq=2.0,
            active=active,
            processed=processed,
            loadavg=[load, 1, 1],
            sw_ident="py-tqctl",
            sw_ver="0.1.0",
            sw_sys="Linux",
        )
    rec.emit(
        "worker-heartbeat",
        LEGACY,
        NOW - 10.5,
        freq=2.0,
        active=2,
        processed=58141,
        loadavg=[3.1, 2.9, 2.7],
        sw_ident="py-celery",
        sw_ver="5.7.0",
        sw_sys="Linux",
    )
    rec.emit(
        "worker-heartbeat",
        LEGACY,
        NOW - 0.5,
        freq=2.0,
        active=2,
        processed=58211,
        loadavg=[3.1, 2.9, 2.7],
        sw_ident="py-celery",
        sw_ver="5.7.0",
        sw_sys="Linux",
    )
    rec.events.sort(key=lambda e: e["local_received"])
    return rec


def _stats(kind: str, size: int, processes: int, autoscale: list[int] | None, total: int, pid: int) -> dict[str, Any]:
    return {
        "pid": pid,
        "total": {"shop.process_order": total},
        "pool": {
            "implementation": kind,
            "max-concurrency": size,
            "processes": list(range(pid + 1, pid + 1 + processes)),
            "autoscale": autoscale,
        },
    }


def snapshots(rec: Recorder) -> list[ClusterSnapshot]:
    groups: dict[str, dict[str, Any]] = {}
    for f in rec.failures:
        g = groups.setdefault(
            f["fingerprint"],
            {
                "fingerprint": f["fingerprint"],
                "task_name": f["name"],
                "exc_type": f["exc_type"],
                "sample": f["exc_message"],
                "count": 0,
                "open": 0,
                "first_seen": f["finished"],
                "last_seen": f["finished"],
            },
        )
        g["count"] += 1
        g["open"] += 1
        g["first_seen"] = min(g["first_seen"], f["finished"])
        g["last_seen"] = max(g["last_seen"], f["finished"])
    for g in groups.values():
        if g["task_name"] == "shop.charge":
            g["count"] += 41  # retried or dismissed earlier: still counted in the group's history
            g["first_seen"] = NOW - 3 * 86400
    replies = {
        W1: WorkerReply(
            W1,
            _stats("prefork", 4, 4, [8, 2], 48213, 4242),
            active=[
                {"id": rec.running[1], "name": "shop.export_report", "time_start": NOW - 41},
                {"id": rec.running[0], "name": "shop.send_receipt", "time_start": NOW - 5.5},
            ],
            reserved=[{}, {}],
            queues=["celery", "high"],
        ),
        W2: WorkerReply(
            W2,
            _stats("prefork", 4, 4, None, 47990, 5151),
            active=[{"id": rec.running[2], "name": "shop.reserve_stock", "time_start": NOW - 0.4}],
            reserved=[{}, {}, {}],
            queues=["celery"],
        ),
        LEGACY: WorkerReply(
            LEGACY,
            _stats("celery.concurrency.prefork:TaskPool", 8, 8, None, 58211, 6161),
            active=[
                {
                    "id": "c0ffee01-6b2a-4f0e-9a41-5d3b8e7f0001",
                    "name": "reports.rebuild_index",
                    "args": ["eu"],
                    "time_start": NOW - 312,
                },
                {
                    "id": "c0ffee02-6b2a-4f0e-9a41-5d3b8e7f0002",
                    "name": "reports.monthly",
                    "args": [],
                    "kwargs": {"month": "2026-12"},
                    "time_start": NOW - 75,
                },
            ],
            reserved=[],
            queues=["celery", "reports"],
            scheduled=[
                {
                    "eta": "2027-01-15T08:20:00+00:00",
                    "priority": 6,
                    "request": {
                        "id": "7d1c2a4e-0000-4000-8000-000000000001",
                        "name": "reports.weekly_digest",
                        "args": ["eu"],
                        "delivery_info": {"routing_key": "reports"},
                    },
                }
            ],
        ),
    }
    delayed = [
        {
            "id": "5e2b8c10-1111-4c1a-9d1e-0a0a0a0a0a01",
            "name": "shop.retry_charge",
            "eta": NOW + 30,
            "queue": "celery",
            "args": "(10431, 2500)",
        },
        {
            "id": "a93d0f72-2222-4c1a-9d1e-0a0a0a0a0a02",
            "name": "shop.send_reminder",
            "eta": NOW + 300,
            "queue": "emails",
            "args": "('cart-abandoned', 881)",
        },
        {
            "id": "c47e11b9-3333-4c1a-9d1e-0a0a0a0a0a03",
            "name": "shop.send_reminder",
            "eta": NOW + 3600,
            "queue": "emails",
            "args": "('cart-abandoned', 902)",
        },
    ]
    beat = (
        {
            "name": "sync-stock",
            "task": "shop.sync_stock",
            "schedule": "every 5 minutes",
            "enabled": True,
            "last_run": "2027-01-15T07:55:00+00:00",
            "next_run": "2027-01-15T08:00:00.500000+00:00",
            "total_run_count": 1802,
        },
        {
            "name": "nightly-report",
            "task": "shop.export_report",
            "schedule": "crontab 0 2 * * * (UTC)",
            "enabled": True,
            "last_run": "2027-01-15T02:00:00+00:00",
            "next_run": "2027-01-16T02:00:00+00:00",
            "total_run_count": 311,
        },
        {
            "name": "purge-carts",
            "task": "shop.purge_carts",
            "schedule": "every 1 hour",
            "enabled": False,
            "last_run": "2027-01-14T23:00:00+00:00",
            "next_run": None,
            "total_run_count": 5120,
        },
    )
    pending = tuple(delayed)
    before = ClusterSnapshot(
        NOW - 10,
        queues=(
            QueueSample("celery", 30, NOW - 80),
            QueueSample("high", 3, NOW - 6),
            QueueSample("emails", 100, NOW - 1250),
            QueueSample("reports", 0),
        ),
        replies=replies,
        delayed=pending,
        delayed_count=len(pending),
    )
    now = ClusterSnapshot(
        NOW - 0.2,
        queues=(
            QueueSample("celery", 42, NOW - 95),
            QueueSample("high", 3, NOW - 4),
            QueueSample("emails", 120, NOW - 1260),
            QueueSample("reports", 0),
        ),
        failure_groups=tuple(sorted(groups.values(), key=lambda g: -g["last_seen"])),
        failures=tuple(sorted(rec.failures, key=lambda f: -f["finished"])),
        dead_letters=DEAD,
        dead_count=3,
        beat=beat,
        beat_leader={"token": "shop-01:4242:7f3a9c21", "ttl_ms": 8200},
        server="valkey 8.1.1",
        inspect_ms=38.0,
        replies=replies,
        delayed=pending,
        delayed_count=len(pending),
    )
    return [before, now]


DEAD = (
    {
        "id": "dl-3",
        "queue": "celery",
        "reason": "unknown_task",
        "detail": "no task named 'shop.legacy_import' is registered",
        "time": NOW - 95,
        "task_id": "9a1f3b2c-0000-4000-8000-00000000dead",
        "task_name": "shop.legacy_import",
        "worker": W2,
        "size": 812,
    },
    {
        "id": "dl-2",
        "queue": "celery",
        "reason": "content_disallowed",
        "detail": "content type 'application/x-python-serialize' is not accepted",
        "time": NOW - 1800,
        "task_id": None,
        "task_name": "shop.process_order",
        "worker": W1,
        "size": 1204,
    },
    {
        "id": "dl-1",
        "queue": "high",
        "reason": "invalid_json",
        "detail": "envelope is not JSON: Expecting value: line 1 column 1 (char 0)",
        "time": NOW - 7200,
        "task_id": None,
        "task_name": None,
        "worker": W1,
        "size": 64,
    },
)


def _dead_raw(letter: dict[str, Any]) -> bytes:
    """What each demo dead letter's worker received: a Celery envelope (JSON, pickle) or garbage."""
    if letter["reason"] == "invalid_json":
        return b"\x80\x04\x95\x1f\x00\x00\x00order 10502 \x00\x00 (truncated by a proxy)"
    pickled = letter["reason"] == "content_disallowed"
    body = b"\x80\x04\x95(\x00\x00\x00" if pickled else json.dumps([[10502], {}, {"callbacks": None}]).encode()
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "binary" if pickled else "utf-8",
        "content-type": "application/x-python-serialize" if pickled else "application/json",
        "headers": {"lang": "py", "task": letter["task_name"], "id": letter["task_id"], "retries": 0},
        "properties": {"body_encoding": "base64", "delivery_info": {"exchange": "", "routing_key": letter["queue"]}},
    }
    return json.dumps(envelope).encode()


AUDIT = [
    {
        "time": "2027-01-15T07:41:12+00:00",
        "user": "maria",
        "action": "pool_grow",
        "target": W1,
        "ok": True,
        "summary": "1 ok",
        "command": "tqctl control pool-grow 1 -d w1@shop-01",
        "replies": [{W1: {"ok": "pool will grow"}}],
    },
    {
        "time": "2027-01-15T07:52:40+00:00",
        "user": "maria",
        "action": "retry_group",
        "target": "3c1d9e0b7a21",
        "ok": True,
        "summary": "retried 29/29 of shop.charge PaymentDeclined",
        "command": "tqctl failures retry --group 3c1d9e0b7a21 --rate 5",
    },
    {
        "time": "2027-01-15T07:58:03+00:00",
        "user": "deploy-bot",
        "action": "cancel_consumer",
        "target": "w3@shop-03",
        "ok": False,
        "summary": "no reply from w3@shop-03",
        "command": "tqctl control cancel-consumer emails -d w3@shop-03",
    },
]


class DemoReader:
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def peek(self, queue: str, limit: int = 100) -> list[dict[str, Any]]:
        rng = random.Random(f"{SEED}:{queue}")
        return [
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "name": "shop.send_newsletter" if queue == "emails" else "shop.process_order",
                "args": f"({10500 + i},)",
                "kwargs": "{}",
                "eta": None,
                "sent_at": NOW - 95 + i * 2,
                "priority": 0,
                "retries": 0,
                "origin": "gen77@shop-web-1",
                "size": 640,
            }
            for i in range(min(limit, 12))
        ]

    def dead_letter(self, letter_id: str) -> dict[str, Any] | None:
        letter = next((d for d in DEAD if d["id"] == letter_id), None)
        return None if letter is None else dict(letter, raw=_dead_raw(letter).decode("utf-8", "replace"))

    def task_detail(self, task_id: str) -> dict[str, Any]:
        failure = next((f for f in self.rec.failures if f["id"] == task_id), None)
        out: dict[str, Any] = {"id": task_id, "runs": [failure] if failure else []}
        if failure:
            from tqctl.tui.editing import from_repr

            out["stored"] = True
            out["message"] = {
                "name": failure["name"],
                "args": from_repr(failure["args"], []),
                "kwargs": from_repr(failure["kwargs"], {}),
                "queue": failure["queue"],
                "headers": {},
            }
        return out


class DemoAdapter:
    """Answers like a cluster would, sends nothing."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def _log(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    def command(self, method: str, workers: list[str], **arguments: Any) -> list[dict[str, Any]]:
        self._log(method, workers, arguments)
        return [{w: {"ok": f"demo: {method} not sent"}} for w in workers]

    def shutdown(self, workers: list[str]) -> list[dict[str, Any]]:
        self._log("shutdown", workers)
        return []

    def revoke(self, ids: list[str], terminate: bool = False, signal: str = "SIGTERM") -> list[dict[str, Any]]:
        self._log("revoke", ids, terminate, signal)
        return [{W1: {"ok": "demo: not sent"}}]

    def retry(self, task_id: str) -> str:
        self._log("retry", task_id)
        return "00000000-demo-4000-8000-000000000000"

    def retry_with(self, task_id: str, name: str, args: Any, kwargs: Any, queue: str | None) -> str:
        self._log("retry_with", task_id, name, args, kwargs, queue)
        return "00000000-demo-4000-8000-000000000001"

    def stored_arguments(self, task_id: str) -> dict[str, Any] | None:
        detail = DemoReader(self.rec).task_detail(task_id)
        message = detail.get("message")
        if not message:
            return None
        return {k: message.get(k) for k in ("args", "kwargs", "queue", "name")}

    def retry_group(self, ids: list[str], per_second: float, progress: Any = None, cancelled: Any = None) -> dict:
        self._log("retry_group", ids, per_second)
        return {"retried": {i: "demo" for i in ids}, "errors": {}, "asked": len(ids)}

    def delete_failures(self, ids: list[str], fingerprint: str | None = None) -> dict[str, Any]:
        self._log("delete_failures", ids, fingerprint)
        return {"deleted": len(ids), "asked": len(ids)}

    def purge(self, queue: str) -> dict[str, Any]:
        self._log("purge", queue)
        return {"queue": queue, "purged": 0}

    def run_eta_now(self, task_id: str) -> dict[str, Any]:
        self._log("run_eta_now", task_id)
        return {"moved": task_id, "queue": "celery"}

    def dead_requeue(self, ids: list[str]) -> dict[str, Any]:
        self._log("dead_requeue", ids)
        return {"requeued": list(ids), "asked": len(ids)}

    def dead_delete(self, ids: list[str]) -> dict[str, Any]:
        self._log("dead_delete", ids)
        return {"deleted": list(ids), "asked": len(ids)}

    def beat_run_now(self, name: str) -> dict[str, Any]:
        self._log("beat_run_now", name)
        return {"entry": name, "task_id": "00000000-demo-4000-8000-000000000002"}

    def beat_set_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        self._log("beat_set_enabled", name, enabled)
        return {"name": name, "enabled": enabled}


class DemoSource:
    kind = "demo"
    can_peek = True
    masked_url = "redis://shop:****@cache.shop.internal:6379/0"
    transport = "demo"
    app_spec = "shop"
    cli_broker = None

    def __init__(self) -> None:
        self.rec = record()
        self.adapter = DemoAdapter(self.rec)
        self.reader = DemoReader(self.rec)

    def load(self, model: Any) -> None:
        first, second = snapshots(self.rec)
        model.apply_snapshot(first)
        model.apply_events(self.rec.events)
        model.apply_snapshot(second)
        model.last_lag = 0.012

    def request_snapshot(self, slow: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def demo_clock() -> float:
    return NOW
