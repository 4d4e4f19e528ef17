"""``redis://``, ``rediss://`` and ``unix://`` URLs as connection settings, with redis-py's query
options (``?db=``, ``?socket_timeout=`` ...), so a URL that worked with it works here."""

from __future__ import annotations

from dataclasses import fields
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from engine.resp.connection import Settings

_FLOATS = ("socket_timeout", "socket_connect_timeout", "health_check_interval")
# redis-py options a URL may carry that change nothing here (RESP2 is what we speak).
_IGNORED = ("protocol", "retry_on_timeout", "encoding")
_TRUE = ("1", "true", "yes", "on")


def settings_from_url(url: str, **options: Any) -> tuple[Settings, dict[str, Any]]:
    """The URL's settings (``options`` win over its query), and the options that are not
    connection settings (``max_connections``...), left for the caller."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    given: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        given[key] = value
    if scheme == "unix":
        given["path"] = unquote(parts.path)
    elif scheme in ("redis", "rediss"):
        given["host"] = unquote(parts.hostname or "localhost")
        given["port"] = parts.port or 6379
        path = parts.path.strip("/")
        if path and "db" not in given:
            given["db"] = path
        if scheme == "rediss":
            given.setdefault("tls", {})
    else:
        raise ValueError(f"not a Redis URL scheme: {scheme!r} (redis://, rediss:// or unix://)")
    if parts.password is not None:
        given["password"] = unquote(parts.password)
    if parts.username:
        given["username"] = unquote(parts.username)
    given.update(options)
    return settings_from(given)


def settings_from(given: dict[str, Any]) -> tuple[Settings, dict[str, Any]]:
    known = {f.name for f in fields(Settings)}
    chosen: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    tls: dict[str, Any] | None = given.pop("tls", None)
    for key, value in given.items():
        if key.startswith("ssl_") or key == "ssl":
            if key != "ssl" and value is not None:
                tls = {**(tls or {}), key: value}
            elif value:
                tls = tls or {}
        elif key in _IGNORED:
            continue
        elif key in known:
            chosen[key] = _typed(key, value)
        else:
            rest[key] = value
    if tls is not None:
        chosen["tls"] = tls
    return Settings(**chosen), rest


def _typed(key: str, value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    if key in ("db", "port"):
        if not value.isdigit():
            raise ValueError(f"{key} must be a whole number, not {value!r}")
        return int(value)
    if key in _FLOATS:
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{key} must be a number of seconds, not {value!r}") from None
    if key in ("socket_keepalive", "decode_responses"):
        return value.lower() in _TRUE
    return value
