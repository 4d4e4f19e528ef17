"""Remote-control (pidbox) requests and replies, as Celery's ``app.control`` sends them."""

from __future__ import annotations

import fnmatch
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from engine.protocol import envelope

EXCHANGE = "celery.pidbox"
REPLY_EXCHANGE = "reply.celery.pidbox"


@dataclass(slots=True)
class ControlRequest:
    method: str
    arguments: dict[str, Any]
    destination: list[str] | None
    pattern: str | None
    matcher: str | None
    ticket: str | None
    reply_to: dict[str, str] | None

    def addressed_to(self, hostname: str) -> bool:
        if self.destination is not None:
            return hostname in self.destination
        if self.pattern:
            if self.matcher == "pcre":
                return re.search(self.pattern, hostname) is not None
            return fnmatch.fnmatchcase(hostname, self.pattern)
        return True


def encode_request(
    method: str,
    arguments: dict[str, Any] | None = None,
    *,
    destination: list[str] | None = None,
    pattern: str | None = None,
    matcher: str | None = None,
    reply_oid: str | None = None,
    timeout: float = 1.0,
    clock: int = 0,
) -> tuple[str | None, bytes]:
    """(ticket, envelope bytes); no ``reply_oid`` makes it a cast (no replies expected)."""
    ticket = str(uuid.uuid4()) if reply_oid else None
    body = {
        "method": method,
        "arguments": arguments or {},
        "destination": destination,
        "pattern": pattern,
        "matcher": matcher,
    }
    if reply_oid:
        body["ticket"] = ticket
        body["reply_to"] = {"exchange": REPLY_EXCHANGE, "routing_key": reply_oid}
    headers = {"clock": clock, "expires": time.time() + timeout}
    return ticket, envelope.encode(body, headers, EXCHANGE, "", delivery_mode=2)


def decode_request(raw: bytes | str) -> ControlRequest | None:
    try:
        body, headers = envelope.decode(raw)
    except envelope.BadEnvelope:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("method"), str):
        return None
    expires = headers.get("expires")
    if isinstance(expires, (int, float)) and expires and expires < time.time():  # 0: never (kombu's pidbox)
        return None
    dest = body.get("destination")
    return ControlRequest(
        method=body["method"],
        arguments=body.get("arguments") or {},
        destination=list(dest) if isinstance(dest, (list, tuple)) else None,
        pattern=body.get("pattern"),
        matcher=body.get("matcher"),
        ticket=body.get("ticket"),
        reply_to=body.get("reply_to") if isinstance(body.get("reply_to"), dict) else None,
    )


def encode_reply(hostname: str, result: Any, ticket: str, oid: str, clock: int = 0) -> bytes:
    return envelope.encode({hostname: result}, {"ticket": ticket, "clock": clock}, REPLY_EXCHANGE, oid)


def decode_reply(raw: bytes | str) -> tuple[str | None, dict[str, Any]]:
    """(ticket, {node: result}); junk gives (None, {})."""
    try:
        body, headers = envelope.decode(raw)
    except envelope.BadEnvelope:
        return None, {}
    return headers.get("ticket"), body if isinstance(body, dict) else {}
