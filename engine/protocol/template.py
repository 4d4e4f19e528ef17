"""Task messages from a template: a task's envelope serialized once, each message a fill-in.

``build`` serializes the whole envelope (about twenty headers and the properties) for every
message, though a task sent again and again with the same options differs only in its ids, its
arguments, ``sent_at`` and, for a group's members, the group and index. A ``Template`` is
``build``'s output for one set of options with those parts left as slots, turned into one
``%``-format: a message costs one C-level fill. The bytes are ``build``'s, byte for byte
(tests/unit/test_message_template.py holds the two side by side).
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii as _text  # C: a str as a JSON string
from typing import Any

from engine import serialization
from engine.protocol import task as protocol
from engine.protocol.task import VARIANT

# Slots: id (and correlation_id), body, argsrepr, kwargsrepr, root_id, parent_id, delivery tag,
# sent_at, group, group_index. Those in RAW are whole JSON values (null, a string or a number), not
# string text.
SLOTS = "ibasrpdtgx"
RAW = "ptgx"
# ``build`` options a template fixes (its cache key); a send with any other non-empty option
# (eta, expires, headers, embed, properties) is built whole.
FIXED = (
    "exchange",
    "routing_key",
    "retries",
    "timelimit",
    "ignore_result",
    "serializer",
    "shadow",
    "reply_to",
    "origin",
)
PER_MESSAGE = ("task_id", "root_id", "parent_id", "group", "group_index")
UNTEMPLATED = ("eta", "expires", "headers", "embed", "properties")
KNOWN = frozenset(FIXED + PER_MESSAGE + UNTEMPLATED)
CACHE_SIZE = 256


def _stamp(now: float) -> str:
    """``repr(round(now, 3))``, as ``build`` writes ``sent_at``, at half its cost (float ``repr``
    is about 0.7 us of a ``delay()``): a correctly rounded ``:.3f`` is the same decimal, so
    without its trailing zeros it is the shortest text of that float."""
    text = f"{now:.3f}".rstrip("0")
    return text + "0" if text[-1] == "." else text


def _id_text(value: str) -> str:
    """A caller's id inside a JSON string (escaped as the encoder would)."""
    return _text(value)[1:-1]


class Template:
    """One task's message for one set of fixed options; ``fill`` makes a message of it."""

    def __init__(self, name: str, **options: Any) -> None:
        tok = "@" + os.urandom(6).hex()
        marks = {k: f"{tok}{k}@" for k in SLOTS}
        fixed_root = options.pop("root_id", None)  # build_many's: one root for every message
        self.fixed_root = _id_text(fixed_root) if fixed_root else None
        fixed_parent = options.pop("parent_id", None)
        self.fixed_parent = _text(fixed_parent) if fixed_parent else "null"
        # A group's members differ in their index (and groups in their id): slots, so one
        # template serves every member rather than one made and dropped per message.
        self.fixed_group = serialization.json_dumps(options.pop("group", None))
        self.fixed_index = serialization.json_dumps(options.pop("group_index", None))
        index_mark: Any = marks["x"]  # text where build expects a number: replaced below
        _, built = protocol.build(
            name,
            (),
            {},
            task_id=marks["i"],
            root_id=marks["r"],
            parent_id=marks["p"],
            group=marks["g"],
            group_index=index_mark,
            **options,
        )
        env = json.loads(built)
        env["body"] = marks["b"]
        env["headers"].update(argsrepr=marks["a"], kwargsrepr=marks["s"], sent_at=marks["t"])
        env["properties"]["delivery_tag"] = marks["d"]
        text = serialization.json_dumps(env)
        for k in RAW:
            text = text.replace(f'"{marks[k]}"', marks[k])
        parts = re.split("(" + "|".join(re.escape(m) for m in marks.values()) + ")", text)
        slots = {m: k for k, m in marks.items()}
        self.fmt = "".join(f"%({slots[p]})s" if p in slots else p.replace("%", "%%") for p in parts)
        self.serializer: str = options.get("serializer", "json")
        self.embed: dict[str, Any] = options.get("embed") or protocol.EMPTY_EMBED
        self.no_args = self.arguments((), {})

    def arguments(self, args: Any, kwargs: Any) -> tuple[str, str, str]:
        """The body, argsrepr and kwargsrepr slots for these arguments."""
        args, kwargs = list(args or ()), dict(kwargs or {})
        body, _ = serialization.dumps([args, kwargs, self.embed], self.serializer)
        return (
            base64.b64encode(body).decode(),
            _id_text(protocol.safe_repr(tuple(args))),
            _id_text(protocol.safe_repr(kwargs)),
        )

    def fill(
        self,
        args: Any,
        kwargs: Any,
        task_id: str | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group: str | None = None,
        group_index: int | None = None,
    ) -> tuple[str, bytes]:
        """One message: ``build(name, args, kwargs, task_id=, root_id=, parent_id=, group=,
        group_index=, **options)``."""
        h = os.urandom(32).hex()  # the task id and the delivery tag from one system call
        if task_id:
            id_text = _id_text(task_id)
        else:
            task_id = id_text = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"
        body, argsrepr, kwargsrepr = self.arguments(args, kwargs) if args or kwargs else self.no_args
        values = {
            "i": id_text,
            "b": body,
            "a": argsrepr,
            "s": kwargsrepr,
            "r": _id_text(root_id) if root_id else self.fixed_root or id_text,
            "p": _text(parent_id) if parent_id else self.fixed_parent,
            "d": f"{h[32:40]}-{h[40:44]}-4{h[45:48]}-{VARIANT[h[48]]}{h[49:52]}-{h[52:64]}",
            # build()'s round(time.time(), 3) as JSON writes it: no trailing zeros, so a message a
            # publish hook decodes and encodes again keeps its bytes
            "t": _stamp(time.time()),
            "g": self.fixed_group if group is None else serialization.json_dumps(group),
            "x": self.fixed_index if group_index is None else serialization.json_dumps(group_index),
        }
        return task_id, (self.fmt % values).encode()

    def fill_many(self, calls: Iterable[tuple[Any, dict[str, Any] | None]]) -> list[tuple[str, bytes]]:
        """``fill`` for each ``(args, kwargs)``: one read of urandom for all, an argument encoding
        shared by consecutive equal calls, ``sent_at`` formatted once per millisecond."""
        calls = list(calls)
        ids = protocol.new_ids(2 * len(calls))
        out: list[tuple[str, bytes]] = []
        last: tuple[Any, Any] | None = None
        values: dict[str, str] = {"p": self.fixed_parent, "g": self.fixed_group, "x": self.fixed_index}
        last_ms, stamp = -1, ""
        for n, (args, kwargs) in enumerate(calls):
            args, kwargs = list(args or ()), dict(kwargs or {})
            if last is None or last[0] != args or last[1] != kwargs:
                last = (args, kwargs)
                values["b"], values["a"], values["s"] = self.arguments(args, kwargs)
            ms = int(time.time() * 1000)
            if ms != last_ms:
                last_ms, stamp = ms, _stamp(ms / 1000)
            task_id = ids[2 * n]
            values["i"] = task_id
            values["r"] = self.fixed_root or task_id
            values["d"] = ids[2 * n + 1]
            values["t"] = stamp
            out.append((task_id, (self.fmt % values).encode()))
        return out


class Templates:
    """An app's templates by task name and fixed options: ``build`` with ``build``'s arguments."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._cache: dict[tuple[Any, ...], Template] = {}

    def build(
        self, name: str, args: Any, kwargs: Any, queue: str, priority: int | None, options: dict[str, Any]
    ) -> tuple[str, bytes]:
        """``protocol.build(name, args, kwargs, queue=, priority=, **options)``, from a template
        when the options allow one (no eta, expiry, extra headers, links or properties)."""
        get = options.get
        if (
            get("eta") or get("expires") or get("headers") or get("embed") or get("properties")
        ) or not options.keys() <= KNOWN:
            return protocol.build(name, args, kwargs, queue=queue, priority=priority, **options)
        key = (name, queue, priority, *map(get, FIXED))
        try:
            template = self._cache.get(key)
        except TypeError:  # an unhashable option value: nothing to cache it under
            return protocol.build(name, args, kwargs, queue=queue, priority=priority, **options)
        if template is None:
            if len(self._cache) >= self.size:
                self._cache.clear()
            fixed = {k: options[k] for k in FIXED if k in options}
            template = self._cache[key] = Template(name, queue=queue, priority=priority, **fixed)
        return template.fill(
            args, kwargs, get("task_id"), get("root_id"), get("parent_id"), get("group"), get("group_index")
        )
