"""task-sent events written by engine.events.sent are the events ``EventDispatcher.task`` writes."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from engine.events.dispatcher import EventDispatcher
from engine.events.sent import _iso, _lines


class Kept:
    """A fanout that keeps what it is given (nothing here is published)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes]] = []

    def publish(self, exchange: str, key: str, raw: bytes) -> None:
        self.sent.append((exchange, key, raw))

    def close(self) -> None:
        pass


def test_each_line_is_the_dispatchers_line_for_the_same_send() -> None:
    plain: dict[str, Any] = {"root_id": None, "parent_id": None, "retries": 0, "exchange": "", "routing_key": None}
    linked = {
        "root_id": "R\u00e9",
        "parent_id": 'P"',
        "retries": 2,
        "eta": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc),
        "expires": dt.datetime(2030, 1, 2, tzinfo=dt.timezone.utc),
        "exchange": "ex",
        "routing_key": "rk",
    }
    batch = [
        (1700000000.123456, "id-1", "t.a", [1, "x"], {"k": "é"}, "celery", plain),
        (1700000000.5, "id-2", "t.a", [], {}, "celery", plain),
        (1700000001.0, "id-3", "t.b", ("y" * 3000,), {}, "q", linked),
        (1700000002.25, "id-4", "t.a", [], {}, "other", plain),
    ]
    ours = _lines(batch, EventDispatcher(Kept(), "gen1@host", batch=1 << 30))  # type: ignore[arg-type]
    fanout = Kept()
    reference = EventDispatcher(fanout, "gen1@host", batch=1 << 30)  # type: ignore[arg-type]
    for sent_at, task_id, name, args, kwargs, queue, opts in batch:
        reference.task(
            "task-sent",
            timestamp=sent_at,
            uuid=task_id,
            root_id=opts.get("root_id") or task_id,
            parent_id=opts.get("parent_id"),
            name=name,
            args=repr(tuple(args)),
            kwargs=repr(kwargs),
            retries=opts.get("retries", 0),
            eta=_iso(opts.get("eta")),
            expires=_iso(opts.get("expires")),
            queue=queue,
            exchange=opts.get("exchange") or "",
            routing_key=opts.get("routing_key") or queue,
        )
    expected = reference._buffer
    assert ours == expected
    assert [json.loads(line)["uuid"] for line in ours] == ["id-1", "id-2", "id-3", "id-4"]
