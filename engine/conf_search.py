"""``app.conf.find_option``: which setting a short or full name means, as Celery's settings search
answers it, for code that resolves ``"expires"`` to ``result_expires`` before reading it.

Celery groups its settings in namespaces (``result``, ``task``, ``worker``, ...) plus a few names
with none (``timezone``, ``accept_content``). The groups are worked out from the setting names we
already hold; ``tests/unit/test_parity_celery57.py`` checks them against Celery's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from engine.celery_defaults import CELERY_DEFAULTS
from engine.celery_settings import CELERY_SETTINGS

# The names Celery's search tries, in its order: the settings outside any namespace, then the
# namespaces (the first that holds a short name wins).
TOP_LEVEL = ("accept_content", "result_accept_content", "enable_utc", "imports", "include", "timezone")
NAMESPACES = (
    "beat broker cache cassandra s3 azureblockblob gcs control couchbase arangodb mongodb cosmosdbsql "
    "event redis result elasticsearch security database task worker"
).split()


class Option(NamedTuple):
    """A setting as the search finds it: its default (what ``app.conf`` reads while it is unset)."""

    default: Any


class searchresult(NamedTuple):  # noqa: N801 - Celery's name, for code that names or unpacks it
    namespace: str | None
    key: str
    type: Any


def _groups() -> dict[str, frozenset[str]]:
    keys: dict[str, set[str]] = {ns: set() for ns in NAMESPACES}
    for name in CELERY_SETTINGS.difference(TOP_LEVEL):
        prefix, _, key = name.partition("_")
        if prefix in keys and key:
            keys[prefix].add(key)
    return {ns: frozenset(found) for ns, found in keys.items()}


GROUPS = _groups()


def find(defaults: Mapping[str, Any], name: str, namespace: str = "") -> searchresult:
    """Celery's search: ``namespace``'s own option first; then a name that is a namespace or a
    top-level option; then the first namespace holding it as a short name; then a full name.
    ``defaults`` are the engine's own (they win over Celery's where we set one); else KeyError."""
    name, namespace = name.lower(), namespace.lower()
    if name in GROUPS.get(namespace, ()):
        return searchresult(namespace, name, _option(defaults, f"{namespace}_{name}"))
    for ns in (*TOP_LEVEL, *NAMESPACES):
        if ns == name:
            if ns in GROUPS:
                return searchresult(None, ns, {key: _option(defaults, f"{ns}_{key}") for key in sorted(GROUPS[ns])})
            return searchresult(None, ns, _option(defaults, ns))
        if name in GROUPS.get(ns, ()):
            return searchresult(ns, name, _option(defaults, f"{ns}_{name}"))
    if name in CELERY_SETTINGS:
        return searchresult(None, name, _option(defaults, name))
    raise KeyError(name)


def _option(defaults: Mapping[str, Any], full_name: str) -> Option:
    return Option(defaults.get(full_name, CELERY_DEFAULTS.get(full_name)))
