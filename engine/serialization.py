"""Payload codecs: JSON by default; pickle only when a setting explicitly allows it.

Pickle from a broker is remote code execution for anyone who can write to that broker, so the
decoder refuses any content type not named in ``accept_content`` before looking at the bytes.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Iterable
from typing import Any

from engine.exceptions import ContentDisallowed

CONTENT_TYPES = {
    "json": "application/json",
    "pickle": "application/x-python-serialize",
}
NAMES_BY_TYPE = {v: k for k, v in CONTENT_TYPES.items()}


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_encoder = json.JSONEncoder(default=_json_default, separators=(", ", ": "))
# ``JSONEncoder.encode`` builds a C encoder on every call; one built once saves about a
# microsecond per message, on every send, event and result. No cycle check (``markers``):
# a self-referencing value fails with RecursionError instead of ValueError.
_c_encode = (json.encoder.c_make_encoder(None, _json_default, json.encoder.encode_basestring_ascii, None,
                                         ": ", ", ", False, False, True)
             if json.encoder.c_make_encoder is not None else None)


def json_dumps(value: Any) -> str:
    """``json.dumps`` with ``_json_default`` and Celery's separators (kombu's output, byte for byte)."""
    if _c_encode is None or isinstance(value, str):
        return _encoder.encode(value)
    return "".join(_c_encode(value, 0))
json_loads = json.loads


def content_type_of(serializer: str) -> str:
    try:
        return CONTENT_TYPES[serializer]
    except KeyError:
        raise ValueError(f"unknown serializer {serializer!r} (use 'json' or 'pickle')") from None


def accepted_types(accept_content: Iterable[str]) -> frozenset[str]:
    """Map Celery-style ``accept_content`` names (or full MIME types) to content types."""
    return frozenset(CONTENT_TYPES.get(name, name) for name in accept_content)


def dumps(payload: Any, serializer: str = "json") -> tuple[bytes, str]:
    if serializer == "json":
        return json_dumps(payload).encode(), CONTENT_TYPES["json"]
    if serializer == "pickle":
        import pickle

        return pickle.dumps(payload, protocol=4), CONTENT_TYPES["pickle"]
    raise ValueError(f"unknown serializer {serializer!r} (use 'json' or 'pickle')")


def loads(data: bytes | str, content_type: str, accepted: frozenset[str]) -> Any:
    if content_type not in accepted:
        raise ContentDisallowed(f"content type {content_type!r} is not accepted")
    if content_type == CONTENT_TYPES["json"]:
        return json_loads(data)
    if content_type == CONTENT_TYPES["pickle"]:
        import pickle

        raw = data.encode("latin-1") if isinstance(data, str) else data
        return pickle.loads(raw)  # noqa: S301 - only reached when explicitly accepted
    raise ContentDisallowed(f"content type {content_type!r} has no decoder")
