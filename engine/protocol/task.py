"""Celery task protocol v2 inside kombu's JSON envelope, both directions.

Decoding never raises anything but ``MalformedMessage``: the worker turns that into a
dead letter with the reason, so one bad message can never kill a worker (Celery's worker dies
on a 2-element body, see celery-wire.md §2.2).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from engine import serialization

EMPTY_EMBED: dict[str, Any] = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
REPR_MAX = 1024
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"


class MalformedMessage(Exception):
    """A message the engine cannot run; ``reason`` is a stable snake_case code for operators."""

    def __init__(self, reason: str, detail: str, headers: dict[str, Any] | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.headers = headers or {}


@dataclass(slots=True)
class TaskMessage:
    """One decoded task message; ``raw`` keeps the exact bytes for dead letters and retries."""

    id: str
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    headers: dict[str, Any]
    properties: dict[str, Any]
    embed: dict[str, Any] = field(default_factory=dict)
    raw: bytes = b""
    content_type: str = "application/json"

    @property
    def retries(self) -> int:
        return int(self.headers.get("retries") or 0)

    @property
    def eta(self) -> dt.datetime | None:
        return parse_time(self.headers.get("eta"))

    @property
    def expires(self) -> dt.datetime | None:
        return parse_time(self.headers.get("expires"))

    @property
    def root_id(self) -> str:
        return self.headers.get("root_id") or self.id

    @property
    def parent_id(self) -> str | None:
        return self.headers.get("parent_id")

    @property
    def group(self) -> str | None:
        return self.headers.get("group")

    @property
    def delivery_info(self) -> dict[str, Any]:
        info = self.properties.get("delivery_info") or {}
        return {
            "exchange": info.get("exchange", ""),
            "routing_key": info.get("routing_key"),
            "priority": self.properties.get("priority"),
            "redelivered": bool(info.get("redelivered") or self.headers.get("redelivered")),
        }

    @property
    def timelimit(self) -> tuple[float | None, float | None]:
        limits = self.headers.get("timelimit") or (None, None)
        hard, soft = (list(limits) + [None, None])[:2]
        return hard, soft

    @property
    def ignore_result(self) -> bool:
        return bool(self.headers.get("ignore_result"))


def parse_time(value: Any) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def priority_key(queue: str, priority: int | None) -> str:
    """kombu's Redis priority bucket list for a queue (0-2 → queue, 3-5 → ``q\\x06\\x163`` ...)."""
    if not priority:
        return queue
    step = max(s for s in PRIORITY_STEPS if s <= min(max(int(priority), 0), 9))
    return queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}"


def safe_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= REPR_MAX else text[: REPR_MAX - 3] + "..."


VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def new_ids(n: int) -> list[str]:
    """``n`` of ``new_id``'s UUIDs from one ``urandom`` call (a system call each was a third of a bulk send)."""
    h = os.urandom(16 * n).hex()
    return [_uuid_text(h, i) for i in range(0, 32 * n, 32)]


def _uuid_text(h: str, i: int) -> str:
    """The UUID in the 32 hex digits of ``h`` at ``i``, marked version 4 (random)."""
    return (
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{VARIANT[h[i + 16]]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
    )


def new_id() -> str:
    """A random (version 4) UUID string, as ``str(uuid.uuid4())`` gives, at a third of its cost."""
    return _uuid_text(os.urandom(16).hex(), 0)


# AMQP message properties a caller may set through ``apply_async`` (``app_id="billing"``): Celery
# hands options it does not know itself to kombu as properties, and a task reads them back in
# ``self.request.properties``. The transport's own (delivery_info, delivery_tag, body_encoding)
# are never taken from a caller.
MESSAGE_PROPERTIES = ("app_id", "user_id", "type", "cluster_id", "message_id", "timestamp")


def build(
    name: str,
    args: Any = (),
    kwargs: dict[str, Any] | None = None,
    *,
    task_id: str | None = None,
    queue: str = "celery",
    exchange: str = "",
    routing_key: str | None = None,
    eta: dt.datetime | None = None,
    expires: dt.datetime | None = None,
    retries: int = 0,
    root_id: str | None = None,
    parent_id: str | None = None,
    group: str | None = None,
    group_index: int | None = None,
    timelimit: tuple[float | None, float | None] = (None, None),
    priority: int | None = None,
    ignore_result: bool = False,
    headers: dict[str, Any] | None = None,
    embed: dict[str, Any] | None = None,
    serializer: str = "json",
    shadow: str | None = None,
    reply_to: str = "",
    origin: str = ORIGIN,
    properties: dict[str, Any] | None = None,
) -> tuple[str, bytes]:
    """Encode a task as the envelope string Celery's clients LPUSH; returns (task_id, bytes).

    ``properties``: the caller's message properties (``MESSAGE_PROPERTIES``)."""
    task_id = task_id or new_id()
    args = list(args or ())
    kwargs = dict(kwargs or {})
    hdrs: dict[str, Any] = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "shadow": shadow,
        "eta": eta.isoformat() if eta else None,
        "expires": expires.isoformat() if expires else None,
        "group": group,
        "group_index": group_index,
        "retries": retries,
        "timelimit": list(timelimit),
        "root_id": root_id or task_id,
        "parent_id": parent_id,
        "argsrepr": safe_repr(tuple(args)),
        "kwargsrepr": safe_repr(kwargs),
        "origin": origin,
        "ignore_result": ignore_result,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
        "sent_at": round(time.time(), 3),  # ours: lets operators see a queue's oldest message age
    }
    if headers:
        hdrs.update(headers)
    body, content_type = serialization.dumps([args, kwargs, embed or EMPTY_EMBED], serializer)
    envelope_properties: dict[str, Any] = {
        **{k: v for k, v in (properties or {}).items() if k in MESSAGE_PROPERTIES},
        "correlation_id": task_id,
        "reply_to": reply_to,
        "delivery_mode": 2,
        "delivery_info": {"exchange": exchange, "routing_key": routing_key or queue},
        "priority": priority or 0,
        "body_encoding": "base64",
        "delivery_tag": new_id(),
    }
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8" if serializer == "json" else "binary",
        "content-type": content_type,
        "headers": hdrs,
        "properties": envelope_properties,
    }
    if expires is not None:
        ttl_ms = max(0, int((expires - dt.datetime.now(dt.timezone.utc)).total_seconds() * 1000))
        envelope_properties["expiration"] = str(ttl_ms)
    return task_id, serialization.json_dumps(envelope).encode()


def build_many(
    name: str, calls: Iterable[tuple[Any, dict[str, Any] | None]], **options: Any
) -> list[tuple[str, bytes]]:
    """``build(name, args, kwargs, **options)`` for each ``(args, kwargs)``, for bulk publishing:
    the same bytes, from one ``Template`` (engine.protocol.template)."""
    from engine.protocol.template import Template  # it builds its template with ``build``

    if options.get("task_id"):
        raise ValueError("build_many makes one id per message: task_id cannot be given")
    return Template(name, **options).fill_many(calls)


def decode(raw: bytes, accepted: frozenset[str], max_bytes: int | None = None) -> TaskMessage:
    """Bytes from the queue → ``TaskMessage``; every failure is a ``MalformedMessage``."""
    if max_bytes is not None and len(raw) > max_bytes:
        raise MalformedMessage("too_large", f"{len(raw)} bytes is over the {max_bytes}-byte limit")
    envelope = _load_envelope(raw)
    headers = envelope.get("headers") or {}
    if not isinstance(headers, dict):
        raise MalformedMessage("bad_envelope", "headers is not an object")
    content_type = envelope.get("content-type") or "application/json"
    payload = _load_payload(envelope, content_type, accepted, headers)
    message = _from_payload(payload, headers, envelope, raw, content_type)
    check_types(message.headers, message.properties, envelope.get("properties"))
    _check_times(message)
    return message


def may_name_eta(raw: bytes) -> bool:
    """Whether the message's headers may set an ETA, without decoding it: False only when no
    ``"eta"`` key with a string value appears (spaced as Python's and kombu's JSON writes it, or
    compact). A screen for callers that would decode only messages with an ETA."""
    return b'"eta": "' in raw or b'"eta":"' in raw


def decode_again(raw: bytes, accepted: frozenset[str]) -> TaskMessage:
    """``decode`` for bytes that ``decode`` already accepted (a prefork child rebuilding the message
    the parent checked): the same message, without checking it twice."""
    envelope = _load_envelope(raw)
    headers = envelope.get("headers") or {}
    content_type = envelope.get("content-type") or "application/json"
    payload = _load_payload(envelope, content_type, accepted, headers)
    return _from_payload(payload, headers, envelope, raw, content_type, checked=True)


def _load_envelope(raw: bytes) -> dict[str, Any]:
    try:
        # Decode first: json.loads(bytes) would sniff a UTF-16/32 BOM and accept what kombu rejects.
        envelope = json.loads(raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw)
    except UnicodeDecodeError as exc:
        raise MalformedMessage("undecodable", f"not UTF-8: {exc.reason}") from None
    except ValueError as exc:
        raise MalformedMessage("invalid_json", f"envelope is not JSON: {exc}") from None
    except RecursionError:
        raise MalformedMessage("invalid_json", "envelope nests too deeply") from None
    if not isinstance(envelope, dict):
        raise MalformedMessage("bad_envelope", "envelope is not a JSON object")
    return envelope


def _load_payload(
    envelope: dict[str, Any], content_type: str, accepted: frozenset[str], headers: dict[str, Any]
) -> Any:
    if content_type not in accepted:
        raise MalformedMessage("content_disallowed", f"content type {content_type!r} is not accepted", headers)
    body = envelope.get("body")
    if not isinstance(body, str):
        raise MalformedMessage("bad_body", "body is missing or not a string", headers)
    props = envelope.get("properties") or {}
    try:
        data: bytes | str = body
        if isinstance(props, dict) and props.get("body_encoding") == "base64":
            data = base64.b64decode(body, validate=True)
        return serialization.loads(data, content_type, accepted)
    except (binascii.Error, ValueError) as exc:
        raise MalformedMessage("bad_body", f"body does not decode: {exc}", headers) from None
    except RecursionError:
        raise MalformedMessage("bad_body", "body nests too deeply", headers) from None
    except Exception as exc:  # a decoder for an explicitly accepted type failed
        raise MalformedMessage("bad_body", f"body does not decode: {exc!r}", headers) from None


def _from_payload(
    payload: Any, headers: dict[str, Any], envelope: dict[str, Any], raw: bytes, ctype: str, checked: bool = False
) -> TaskMessage:
    props = envelope.get("properties") or {}
    if isinstance(payload, dict) and "task" not in headers:  # protocol 1: everything in the body
        headers = {**headers, "task": payload.get("task"), "id": payload.get("id")}
        for key in ("eta", "expires", "retries", "taskset", "group", "group_index", "timelimit"):
            if payload.get(key) is not None:
                headers.setdefault("group" if key == "taskset" else key, payload[key])
        # As Celery's proto1_to_proto2: a protocol 1 chain is links, so callbacks and chord must come along.
        embed = {key: payload.get(key) for key in ("callbacks", "errbacks", "chord")}
        payload = [payload.get("args", []), payload.get("kwargs", {}), {**embed, "chain": None}]
    name, task_id = headers.get("task"), headers.get("id")
    if not name or not isinstance(name, str):
        raise MalformedMessage("missing_header", "the 'task' header is missing", headers)
    if not task_id or not isinstance(task_id, str):
        raise MalformedMessage("missing_header", "the 'id' header is missing", headers)
    if not isinstance(payload, (list, tuple)) or len(payload) != 3:
        raise MalformedMessage("bad_body", "body is not [args, kwargs, embed]", headers)
    args, kwargs, embed = payload
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        raise MalformedMessage("bad_body", "args is not a list or kwargs not an object", headers)
    if embed is not None and not isinstance(embed, dict):
        raise MalformedMessage("bad_body", "embed is not an object", headers)
    if embed and not checked and (problem := embed_problem(embed)):
        raise MalformedMessage("bad_body", problem, headers)
    return TaskMessage(
        id=task_id,
        name=name,
        args=list(args),
        kwargs=kwargs,
        headers=headers,
        properties=props if isinstance(props, dict) else {},
        embed=embed or {},
        raw=raw,
        content_type=ctype,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _limits(value: Any) -> bool:
    """Celery's ``[hard, soft]``: each null or seconds >= 0 (a negative limit would kill the child)."""
    return (
        isinstance(value, (list, tuple))
        and len(value) <= 2
        and all(v is None or (_is_number(v) and v >= 0) for v in value)
    )


# Each optional header or property the worker reads: what it must be when present and not null. A
# wrong type is refused here, once, rather than raising wherever the worker happens to read it.
_TEXT = (lambda v: isinstance(v, str), "a string")
HEADER_RULES: dict[str, tuple[Any, str]] = {
    "retries": (_count, "a non-negative integer"),
    "timelimit": (_limits, "[hard, soft] with each null or a number of seconds >= 0"),
    "group_index": (_count, "a non-negative integer"),
    "replaced_task_nesting": (_count, "a non-negative integer"),
    "ignore_result": (lambda v: isinstance(v, bool), "true or false"),
    "stamped_headers": (lambda v: isinstance(v, list), "a list"),
    "stamps": (lambda v: isinstance(v, dict), "an object"),
    "sent_at": (_is_number, "a number"),
    **{
        key: _TEXT
        for key in ("root_id", "parent_id", "group", "shadow", "argsrepr", "kwargsrepr", "origin", "lang", "retry_of")
    },
}
PROPERTY_RULES: dict[str, tuple[Any, str]] = {
    "delivery_info": (
        lambda v: (
            isinstance(v, dict)
            and all(info is None or isinstance(info, str) for info in (v.get("exchange"), v.get("routing_key")))
        ),
        "an object whose exchange and routing_key are strings",
    ),
    "priority": (lambda v: _is_int(v) and 0 <= v <= 255, "an integer from 0 to 255"),
    "correlation_id": _TEXT,
    "reply_to": _TEXT,
    "body_encoding": _TEXT,
}


def check_types(headers: dict[str, Any], properties: dict[str, Any], raw_properties: Any = None) -> None:
    """Refuse a header or property of the wrong type (``bad_header``), naming it and its value."""
    if raw_properties is not None and not isinstance(raw_properties, dict):
        raise MalformedMessage("bad_header", f"properties must be an object, not {_short(raw_properties)}", headers)
    for kind, values, rules in (("header", headers, HEADER_RULES), ("property", properties, PROPERTY_RULES)):
        for key, (valid, wanted) in rules.items():
            value = values.get(key)
            if value is not None and not valid(value):
                raise MalformedMessage("bad_header", f"{kind} {key!r} must be {wanted}, not {_short(value)}", headers)


SIGNATURE_FIELDS: tuple[tuple[str, type | tuple[type, ...], str], ...] = (
    ("args", (list, tuple), "a list"),
    ("kwargs", dict, "an object"),
    ("options", dict, "an object"),
    ("subtask_type", str, "a string"),
)
MAX_CANVAS_DEPTH = 32


def embed_problem(embed: dict[str, Any]) -> str | None:
    """What is wrong with the embed's workflow parts (Celery's shapes), or None: checked before the
    task runs, so a task never runs and then fails to send what follows it (issue 13 item 6)."""
    for key in ("callbacks", "errbacks", "chain"):
        value = embed.get(key)
        if value is None:
            continue
        if not isinstance(value, list):
            return f"embed {key!r} must be a list of signatures, not {_short(value)}"
        for n, item in enumerate(value):
            if problem := signature_problem(item):
                return f"embed {key!r}[{n}] {problem}"
    chord = embed.get("chord")
    if chord is not None and (problem := signature_problem(chord)):
        return f"embed 'chord' {problem}"
    return None


def signature_problem(value: Any, depth: int = 0) -> str | None:
    """What makes ``value`` not a signature dict (nested groups, chains and chords included), or None."""
    if depth > MAX_CANVAS_DEPTH:
        return f"nests more than {MAX_CANVAS_DEPTH} workflows deep"
    if not isinstance(value, dict):
        return f"is not a signature object: {_short(value)}"
    if not isinstance(value.get("task"), str) or not value["task"]:
        return f"has no task name: {_short(value)}"
    for key, types, wanted in SIGNATURE_FIELDS:
        if value.get(key) is not None and not isinstance(value[key], types):
            return f"has {key} that is not {wanted}: {_short(value[key])}"
    options = value.get("options") or {}
    parts = [*_as_list(options.get("link")), *_as_list(options.get("link_error"))]
    kwargs = value.get("kwargs") or {}
    kind = value.get("subtask_type")
    if kind in ("group", "chain"):
        if not isinstance(kwargs.get("tasks"), (list, tuple)):
            return f"is a {kind} whose tasks are not a list: {_short(kwargs.get('tasks'))}"
        parts += list(kwargs["tasks"])
    elif kind == "chord":
        header = kwargs.get("header")
        parts += [header] if isinstance(header, dict) else list(header) if isinstance(header, list) else [header]
        parts.append(kwargs.get("body"))
    for part in parts:
        if problem := signature_problem(part, depth + 1):
            return problem
    return None


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def _short(value: Any) -> str:
    text = safe_repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_times(message: TaskMessage) -> None:
    for key in ("eta", "expires"):
        try:
            when = parse_time(message.headers.get(key))
            if when is not None:
                when.timestamp()
        except (ValueError, TypeError, OverflowError, OSError) as exc:
            raise MalformedMessage("bad_header", f"{key} is not a time: {exc}", message.headers) from None


def republish_copy(message: TaskMessage, **header_changes: Any) -> bytes:
    """The same message with some headers changed and a fresh delivery tag (retries, requeues)."""
    envelope = json.loads(message.raw)
    envelope["headers"].update(header_changes)
    envelope.setdefault("properties", {})["delivery_tag"] = new_id()
    return serialization.json_dumps(envelope).encode()


def headers_of(raw: bytes) -> dict[str, Any]:
    """The headers of an envelope, or ``{}``: for naming a message that failed after decoding."""
    try:
        headers = json.loads(raw).get("headers")
    except (ValueError, AttributeError, TypeError, RecursionError):
        return {}
    return headers if isinstance(headers, dict) else {}


def routing_of(raw: bytes) -> tuple[str | None, int]:
    """(queue, priority) recorded in an envelope, for putting a message back where it came from."""
    try:
        props = json.loads(raw).get("properties") or {}
        info = props.get("delivery_info") or {}
        return info.get("routing_key"), int(props.get("priority") or 0)
    except (ValueError, AttributeError, TypeError):
        return None, 0
