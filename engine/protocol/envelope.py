"""kombu's JSON envelope for non-task messages: events, control requests and replies."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from engine.serialization import json_dumps


class BadEnvelope(ValueError):
    """Bytes that are not a kombu JSON envelope with a JSON body."""


def encode(payload: Any, headers: dict[str, Any], exchange: str, routing_key: str,
           delivery_mode: int = 1) -> bytes:
    envelope = {
        "body": base64.b64encode(json_dumps(payload).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "delivery_mode": delivery_mode,
            "delivery_info": {"exchange": exchange, "routing_key": routing_key},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json_dumps(envelope).encode()


def decode(raw: bytes | str) -> tuple[Any, dict[str, Any]]:
    """(payload, headers); only JSON bodies are ever decoded here."""
    try:
        envelope = json.loads(raw)
        if not isinstance(envelope, dict):
            raise BadEnvelope("envelope is not an object")
        if envelope.get("content-type", "application/json") != "application/json":
            raise BadEnvelope(f"content type {envelope.get('content-type')!r} refused")
        body = envelope.get("body")
        props = envelope.get("properties") or {}
        if props.get("body_encoding") == "base64":
            body = base64.b64decode(body)
        payload = json.loads(body) if isinstance(body, (str, bytes)) else body
        return payload, envelope.get("headers") or {}
    except (ValueError, TypeError, AttributeError) as exc:
        if isinstance(exc, BadEnvelope):
            raise
        raise BadEnvelope(str(exc)) from None
