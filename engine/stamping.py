"""Celery's stamping API: ``sig.stamp(visitor=..., **headers)`` labels every task of a canvas.

A stamp is an option on the signature plus its name in ``stamped_headers``; the client puts
them on the wire as Celery 5.7 does (``stamped_headers`` and ``stamps`` headers) and the task
reads them as ``self.request.stamps``. The walk works on the signature dicts themselves (the
canvas classes are dicts), changing each member's ``options`` in place, so it stamps canvases
built here and ones received from Celery alike.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.app import App


class StampingVisitor:
    """Override the ``on_*`` methods; each returns the stamps to add at that point (Celery's hooks)."""

    def on_group_start(self, group: Any, **headers: Any) -> dict[str, Any]:
        return {}

    def on_group_end(self, group: Any, **headers: Any) -> None:
        pass

    def on_chain_start(self, chain: Any, **headers: Any) -> dict[str, Any]:
        return {}

    def on_chain_end(self, chain: Any, **headers: Any) -> None:
        pass

    def on_signature(self, sig: Any, **headers: Any) -> dict[str, Any]:
        raise NotImplementedError("a StampingVisitor must define on_signature")

    def on_chord_header_start(self, sig: Any, **header: Any) -> dict[str, Any]:
        return self.on_group_start(sig, **header)

    def on_chord_header_end(self, sig: Any, **header: Any) -> None:
        self.on_group_end(sig, **header)

    def on_chord_body(self, sig: Any, **header: Any) -> dict[str, Any]:
        return {}

    def on_callback(self, callback: Any, **header: Any) -> dict[str, Any]:
        return {}

    def on_errback(self, errback: Any, **header: Any) -> dict[str, Any]:
        return {}


def merge(into: dict[str, Any], other: dict[str, Any] | None, aggregate: bool) -> None:
    """Celery's stamp merge: lists concatenate; a duplicate scalar becomes a list of both when
    ``aggregate`` (``append_stamps=True``), else the first one stays; new keys are added."""
    if not other:
        return
    for key, value in list(into.items()):
        if key not in other:
            continue
        if isinstance(value, dict) and isinstance(other[key], dict):
            merge(value, other[key], aggregate)
            continue
        if isinstance(value, (int, float, str)):
            into[key] = [value] if aggregate else value
        if isinstance(other[key], list) and isinstance(into[key], list):
            into[key].extend(other[key])
        elif aggregate:
            into[key] = [] if into[key] is None else list(into[key])
            into[key].append(other[key])
    for key, value in other.items():
        into.setdefault(key, value)


def _stamp_headers(
    sig: dict[str, Any], visitor_headers: dict[str, Any] | None, append: bool, self_headers: bool = True, **headers: Any
) -> dict[str, Any]:
    headers = dict(headers)
    headers.setdefault("stamped_headers", list(headers))
    if visitor_headers is not None:
        visitor_headers = dict(visitor_headers)
        visitor_headers.setdefault("stamped_headers", list(visitor_headers))
        merge(headers, visitor_headers, append)
        headers["stamped_headers"] = list(dict.fromkeys(headers["stamped_headers"]))
    if self_headers:
        options = sig.get("options") or {}
        names = list(dict.fromkeys([*headers.get("stamped_headers", []), *(options.get("stamped_headers") or [])]))
        headers["stamped_headers"] = names
        merge(headers, {k: v for k, v in options.items() if k in names}, append)
        headers["stamped_headers"] = list(dict.fromkeys(headers["stamped_headers"]))
    return headers


def _as_sig(value: Any, app: App | None) -> Any:
    from engine.canvas import maybe_signature

    if not isinstance(value, dict):
        return value
    value.setdefault("options", {})  # the converted signature shares this dict: stamps land in the canvas
    return maybe_signature(value, app)


def _links(value: Any) -> list[Any]:
    if not value:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def stamp_links(
    sig: dict[str, Any], visitor: StampingVisitor | None, append: bool, app: App | None, **headers: Any
) -> None:
    """Stamp the callbacks and errbacks, with the visitor's and the given stamps but not the sig's own."""
    options = sig.setdefault("options", {})
    for key, hook in (("link", "on_callback"), ("link_error", "on_errback")):
        current = copy.deepcopy(headers)
        for link in _links(options.get(key)):
            link = _as_sig(link, app)
            extra = getattr(visitor, hook)(link, **current) or {} if visitor is not None else None
            current = _stamp_headers(link, extra, append, self_headers=False, **current)
            stamp(link, visitor, append, app=app, **current)


def stamp(
    sig: dict[str, Any],
    visitor: StampingVisitor | None = None,
    append_stamps: bool = False,
    *,
    app: App | None = None,
    **headers: Any,
) -> dict[str, Any]:
    """Stamp ``sig`` and everything inside it (Celery's ``Signature.stamp`` for each canvas type)."""
    app = app or getattr(sig, "app", None)
    kind = sig.get("subtask_type")
    kwargs = sig.get("kwargs") or {}
    if kind in ("chain", "group"):
        start = "on_chain_start" if kind == "chain" else "on_group_start"
        extra = getattr(visitor, start)(sig, **headers) or {} if visitor is not None else None
        headers = _stamp_headers(sig, extra, append_stamps, **headers)
        stamp_links(sig, visitor, append_stamps, app, **headers)
        for member in _members(kwargs.get("tasks")):
            stamp(_as_sig(member, app), visitor, append_stamps, app=app, **headers)
        if visitor is not None:
            getattr(visitor, "on_chain_end" if kind == "chain" else "on_group_end")(sig, **headers)
        return sig
    if kind == "chord":
        extra = visitor.on_chord_header_start(sig, **headers) or {} if visitor is not None else None
        headers = _stamp_headers(sig, extra, append_stamps, **headers)
        stamp_links(sig, visitor, append_stamps, app, **headers)
        for member in _members(kwargs.get("header")):
            stamp(_as_sig(member, app), visitor, append_stamps, app=app, **headers)
        if visitor is not None:
            visitor.on_chord_header_end(sig, **headers)
        body = kwargs.get("body")
        if visitor is not None and body is not None:
            headers = _stamp_headers(sig, visitor.on_chord_body(sig, **headers) or {}, append_stamps, **headers)
            stamp(_as_sig(body, app), visitor, append_stamps, app=app, **headers)
        return sig
    stamp_links(sig, visitor, append_stamps, app, **headers)
    extra = visitor.on_signature(sig, **headers) or {} if visitor is not None else None
    sig.setdefault("options", {}).update(_stamp_headers(sig, extra, append_stamps, **headers))
    return sig


def _members(tasks: Any) -> list[Any]:
    """A group's or chord header's members: a list, or (from Celery) a ``celery.group`` signature dict."""
    if isinstance(tasks, dict):
        return _members((tasks.get("kwargs") or {}).get("tasks"))
    return list(tasks or ())
