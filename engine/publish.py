"""``before_task_publish``/``after_task_publish`` around a send, with Celery's arguments.

Tracing hooks (OpenTelemetry, Sentry) add headers to the message in ``before_task_publish``, so
the receivers get the message's own ``headers`` and ``properties`` dicts and the body as
``(args, kwargs, embed)``; whatever they change is what is published. The message is only
unpacked when a receiver is connected: a send without receivers costs nothing extra.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from engine import serialization, signals


def hooks_connected() -> bool:
    return bool(signals.before_task_publish.receivers or signals.after_task_publish.receivers)


class Publishing:
    """One message on its way out: the decoded envelope receivers may change, re-encoded on demand."""

    def __init__(self, name: str, raw: bytes, exchange: str, routing_key: str) -> None:
        self.name, self.exchange, self.routing_key = name, exchange, routing_key
        self.envelope: dict[str, Any] = json.loads(raw)
        ctype = self.envelope.get("content-type") or "application/json"
        data = base64.b64decode(self.envelope["body"])
        args, kwargs, embed = serialization.loads(data, ctype, frozenset({ctype}))
        self.body = (args, kwargs, embed)
        names = {content: name for name, content in serialization.CONTENT_TYPES.items()}
        self.serializer = names.get(ctype, "json")  # re-encoded as it came

    def before(self) -> bytes:
        """Fire ``before_task_publish`` and return the message as the receivers left it."""
        headers, properties = self.envelope["headers"], self.envelope["properties"]
        signals.before_task_publish.send(
            sender=self.name,
            body=self.body,
            exchange=self.exchange,
            routing_key=self.routing_key,
            headers=headers,
            properties=properties,
            declare=[],
            retry_policy=None,
        )
        body, _ = serialization.dumps(list(self.body), self.serializer)
        self.envelope["body"] = base64.b64encode(body).decode()
        return serialization.json_dumps(self.envelope).encode()

    def after(self) -> None:
        signals.after_task_publish.send(
            sender=self.name,
            body=self.body,
            exchange=self.exchange,
            routing_key=self.routing_key,
            headers=self.envelope["headers"],
            properties=self.envelope["properties"],
        )
