"""Celery's event messages (``celeryev``): building them and reading single or batched bodies."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

from engine.protocol import envelope

EXCHANGE = "celeryev"
MULTI_KEY = "task.multi"
SW_IDENT = "py-tqctl"
SW_VER = "0.1.0"

TASK_TYPES = (
    "task-sent",
    "task-received",
    "task-started",
    "task-succeeded",
    "task-failed",
    "task-retried",
    "task-revoked",
    "task-rejected",
)
WORKER_TYPES = ("worker-online", "worker-heartbeat", "worker-offline")


def utcoffset() -> float:
    """Hours west of UTC, as Celery sends it."""
    return (time.altzone if time.daylight and time.localtime().tm_isdst else time.timezone) / 3600


def routing_key(event_type: str) -> str:
    return event_type.replace("-", ".")


def channel(db: int, key: str) -> str:
    """kombu's fanout channel name on Redis: pub/sub is not per-db, hence the prefix."""
    return f"/{db}.{EXCHANGE}/{key}"


def make(event_type: str, hostname: str, clock: int, **fields: Any) -> dict[str, Any]:
    event = {"hostname": hostname, "utcoffset": utcoffset(), "pid": os.getpid(), "clock": clock}
    event.update(fields)
    event["timestamp"] = fields.get("timestamp") or time.time()
    event["type"] = event_type
    return event


def worker_fields(freq: float, active: int, processed: int) -> dict[str, Any]:
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = [0.0, 0.0, 0.0]
    return {
        "freq": freq,
        "active": active,
        "processed": processed,
        "loadavg": load,
        "sw_ident": SW_IDENT,
        "sw_ver": SW_VER,
        "sw_sys": platform.system(),
    }


def encode(events: dict[str, Any] | list[dict[str, Any]], hostname: str) -> tuple[str, bytes]:
    """(routing key, envelope bytes): a list goes out as ``task.multi`` like Celery's batches."""
    key = MULTI_KEY if isinstance(events, list) else routing_key(events["type"])
    return key, envelope.encode(events, {"hostname": hostname}, EXCHANGE, key)


def encode_batch(events_json: list[str], hostname: str) -> tuple[str, bytes]:
    """``encode`` for a ``task.multi`` batch whose events are JSON text already."""
    body = "[" + ", ".join(events_json) + "]"
    return MULTI_KEY, envelope.encode_json(body, {"hostname": hostname}, EXCHANGE, MULTI_KEY)


def decode(raw: bytes | str) -> list[dict[str, Any]]:
    """Events in a message: a single dict or a ``task.multi`` list. Bad input gives ``[]``."""
    try:
        payload, _ = envelope.decode(raw)
    except envelope.BadEnvelope:
        return []
    items = payload if isinstance(payload, list) else [payload]
    return [e for e in items if isinstance(e, dict) and isinstance(e.get("type"), str)]
