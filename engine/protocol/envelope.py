"""kombu's JSON envelope for non-task messages: events, control requests and replies."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from engine.serialization import json_dumps


class BadEnvelope(ValueError):
    """Bytes that are not a kombu JSON envelope with a JSON body."""


def encode(payload: Any, headers: dict[str, Any], exchange: str, routing_key: str, delivery_mode: int = 1) -> bytes:
    return encode_json(json_dumps(payload), headers, exchange, routing_key, delivery_mode)


def encode_json(body: str, headers: dict[str, Any], exchange: str, routing_key: str, delivery_mode: int = 1) -> bytes:
    """``encode`` for a body that is JSON text already (a worker builds its event batches as text)."""
    rest = {
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
    # Base64 needs no JSON escaping: spliced in, rather than scanned by the encoder (a batch of
    # events is tens of kilobytes), and kept as bytes (a str round trip copied it twice more).
    return b'{"body": "' + base64.b64encode(body.encode()) + b'", ' + json_dumps(rest)[1:].encode()


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
            if not isinstance(body, (str, bytes)):
                raise BadEnvelope("a base64 body that is not a string")
            body = base64.b64decode(body)
        payload = json.loads(body) if isinstance(body, (str, bytes)) else body
        return payload, envelope.get("headers") or {}
    except (ValueError, TypeError, AttributeError) as exc:
        if isinstance(exc, BadEnvelope):
            raise
        raise BadEnvelope(str(exc)) from None
