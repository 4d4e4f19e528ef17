"""kombu's JSON envelope (what the engine builds and the worker decodes) ↔ an AMQP message.

On Redis the envelope is the message. On AMQP the same parts travel as the frame's body,
content type and encoding, application headers and basic properties, exactly as Celery's
client sends them, so a Celery worker reads ours and ours reads Celery's. The worker still sees
an envelope: the consumer side rebuilds one from each delivery, with ``delivery_info`` filled
in from the broker (exchange, routing key, ``redelivered``).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
from typing import Any

from engine.serialization import json_dumps

# Basic properties carried over as they are (the rest of the envelope's are Redis bookkeeping).
PROPERTIES = ("correlation_id", "reply_to", "delivery_mode", "priority", "message_id", "timestamp", "type")


class Outgoing:
    """One message unpacked for ``basic_publish``."""

    __slots__ = ("body", "content_type", "content_encoding", "headers", "properties", "expiration")

    def __init__(self, raw: bytes) -> None:
        envelope = json.loads(raw)
        props = envelope.get("properties") or {}
        body = envelope.get("body") or ""
        self.body: bytes = (
            base64.b64decode(body) if props.get("body_encoding") == "base64" else str(body).encode("utf-8")
        )
        self.content_type: str = envelope.get("content-type") or "application/json"
        self.content_encoding: str = envelope.get("content-encoding") or "utf-8"
        self.headers: dict[str, Any] = envelope.get("headers") or {}
        self.properties: dict[str, Any] = {k: props[k] for k in PROPERTIES if props.get(k) not in (None, "")}
        self.properties.setdefault("delivery_mode", 2)
        ttl = props.get("expiration")
        # The envelope says milliseconds (AMQP's unit); kombu's ``expiration`` is seconds.
        self.expiration: float | None = max(float(ttl), 0.0) / 1000 if ttl not in (None, "") else None


def to_message(message: Outgoing) -> Any:
    """The ``amqp.Message`` kombu's ``Producer.publish`` would have built for it (expiration in
    milliseconds, as a string, as kombu writes it)."""
    import amqp

    props = dict(message.properties)
    if message.expiration is not None:
        props["expiration"] = str(int(message.expiration * 1000))
    return amqp.Message(
        message.body,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        application_headers=message.headers,
        **props,
    )


def envelope(
    body: bytes | str,
    content_type: str | None,
    content_encoding: str | None,
    headers: dict[str, Any] | None,
    properties: dict[str, Any],
    exchange: str,
    routing_key: str,
    redelivered: bool,
    tag: str,
) -> bytes:
    """The envelope a Redis consumer would have read for this delivery (py-amqp hands over a
    body it could decode by its ``content_encoding`` as text: encoded back the same way)."""
    if isinstance(body, str):
        body = body.encode(content_encoding or "utf-8", "surrogateescape")
    props = {k: properties[k] for k in PROPERTIES if properties.get(k) is not None}
    props.update(
        body_encoding="base64",
        delivery_tag=tag,
        delivery_info={"exchange": exchange, "routing_key": routing_key, "redelivered": redelivered},
    )
    props.setdefault("priority", 0)
    data = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": content_encoding or "utf-8",
        "content-type": content_type or "application/json",
        "headers": headers or {},
        "properties": props,
    }
    try:
        return json_dumps(data).encode()
    except (TypeError, ValueError):
        # Timestamps, decimals and bytes get kombu's JSON type tags above; anything else, as text.
        return json.dumps(data, default=_plain).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return repr(value)
