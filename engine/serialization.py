"""Payload codecs: JSON by default; pickle only when a setting explicitly allows it.

Pickle from a broker is remote code execution for anyone who can write to that broker, so the
decoder refuses any content type not named in ``accept_content`` before looking at the bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import sys
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from engine.exceptions import ContentDisallowed

CONTENT_TYPES = {
    "json": "application/json",
    "pickle": "application/x-python-serialize",
}
NAMES_BY_TYPE = {v: k for k, v in CONTENT_TYPES.items()}
_JSON = CONTENT_TYPES["json"]


def _tag(kind: str, value: Any) -> dict[str, Any]:
    return {"__type__": kind, "__value__": value}


def _json_default(value: Any) -> Any:
    """kombu 5.7's JSON encoder: the types JSON lacks travel as ``{"__type__", "__value__"}``
    tags, so a Celery worker receives a real ``datetime``/``bytes``/``UUID``/``Decimal``."""
    reducer = getattr(value, "__json__", None)
    if reducer is not None:
        return reducer()
    if isinstance(value, dt.datetime):  # before date: a datetime is a date too
        return _tag("datetime", value.isoformat())
    if isinstance(value, dt.date):
        return _tag("date", value.isoformat())
    if isinstance(value, dt.time):
        return _tag("time", value.isoformat())
    decimal = sys.modules.get("decimal")  # imported on first use: a value can't be a Decimal before
    if decimal is not None and isinstance(value, decimal.Decimal):
        return _tag("decimal", str(value))
    if isinstance(value, uuid.UUID):
        return _tag("uuid", {"hex": value.hex})
    if isinstance(value, bytes):
        try:
            return _tag("bytes", value.decode("utf-8"))
        except UnicodeDecodeError:
            return _tag("base64", base64.b64encode(value).decode("utf-8"))
    if isinstance(value, (set, frozenset)):  # ours: kombu refuses sets
        return list(value)
    as_tuple = getattr(value, "as_tuple", None)  # a result handle, stored as Celery's backend does
    if as_tuple is not None:
        return as_tuple()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _decimal(text: str) -> Any:
    """``decimal`` is imported only when a message holds one: a worker tree is smaller without it."""
    import decimal

    return decimal.Decimal(text)


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": lambda v: dt.datetime.fromisoformat(v).date(),
    "time": dt.time.fromisoformat,
    "decimal": _decimal,
    "uuid": lambda v: uuid.UUID(**v),
    "bytes": lambda v: v.encode("utf-8"),
    "base64": lambda v: base64.b64decode(v.encode("utf-8")),
}


def _object_hook(obj: dict[str, Any]) -> Any:
    """kombu's ``object_hook``: a dict of exactly ``__type__`` and ``__value__`` is a tagged value."""
    if len(obj) == 2 and "__type__" in obj and "__value__" in obj:
        decoder = _DECODERS.get(obj["__type__"])
        if decoder is None:
            raise ValueError(f"Unsupported type {obj['__type__']!r} in a JSON tag")
        return decoder(obj["__value__"])
    return obj


def json_loads(data: bytes | bytearray | str) -> Any:
    """``json.loads`` plus kombu's type tags (UTF-8 only, as kombu)."""
    text = data if isinstance(data, str) else bytes(data).decode("utf-8")
    if '"__type__"' in text:
        return json.loads(text, object_hook=_object_hook)
    return json.loads(text)


_encoder = json.JSONEncoder(default=_json_default, separators=(", ", ": "))
# ``JSONEncoder.encode`` builds a C encoder on every call; one built once saves about a
# microsecond per message, on every send, event and result. No cycle check (``markers``):
# a self-referencing value fails with RecursionError instead of ValueError.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)  # CPython's C accelerator; not in typeshed
_c_encode = (
    _c_make_encoder(None, _json_default, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True)
    if _c_make_encoder is not None
    else None
)


def json_dumps(value: Any) -> str:
    """``json.dumps`` with ``_json_default`` and Celery's separators (kombu's output, byte for byte)."""
    if _c_encode is None or isinstance(value, str):
        return _encoder.encode(value)
    return "".join(_c_encode(value, 0))


def content_type_of(serializer: str) -> str:
    try:
        return CONTENT_TYPES[serializer]
    except KeyError:
        raise ValueError(f"unknown serializer {serializer!r} (use 'json' or 'pickle')") from None


def accepted_types(accept_content: Iterable[str]) -> frozenset[str]:
    """Map Celery-style ``accept_content`` names (or full MIME types) to content types."""
    return frozenset(CONTENT_TYPES.get(name, name) for name in accept_content)


def dumps(payload: Any, serializer: str = "json") -> tuple[bytes, str]:
    """A message's body. A payload the serializer refuses raises kombu's ``EncodeError``, as
    Celery's send does (kombu wraps the encoder's error), so code catching it moves over."""
    if serializer not in CONTENT_TYPES:
        raise ValueError(f"unknown serializer {serializer!r} (use 'json' or 'pickle')")
    try:
        if serializer == "json":
            return json_dumps(payload).encode(), CONTENT_TYPES["json"]
        import pickle

        return pickle.dumps(payload, protocol=4), CONTENT_TYPES["pickle"]
    except Exception as exc:
        from kombu.exceptions import EncodeError  # (30 ms of imports that a good payload never pays)

        raise EncodeError(exc) from exc


def loads(data: bytes | str, content_type: str, accepted: frozenset[str]) -> Any:
    if content_type not in accepted:
        raise ContentDisallowed(f"content type {content_type!r} is not accepted")
    if content_type == _JSON:
        # UTF-8 as kombu decodes it (json.loads(bytes) would sniff for UTF-16/32, in Python code);
        # a payload without a tag never pays for the hook.
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        if '"__type__"' in text:
            return json.loads(text, object_hook=_object_hook)
        return json.loads(text)
    if content_type == CONTENT_TYPES["pickle"]:
        import pickle

        raw = data.encode("latin-1") if isinstance(data, str) else data
        return pickle.loads(raw)  # noqa: S301 - only reached when explicitly accepted
    raise ContentDisallowed(f"content type {content_type!r} has no decoder")
