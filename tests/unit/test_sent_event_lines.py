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


def _reference(batch: list[tuple[Any, ...]]) -> list[str]:
    """Each send's line as ``EventDispatcher.task`` writes it, one at a time (what ``_lines`` must equal)."""
    dispatcher = EventDispatcher(Kept(), "gen1@host", batch=1 << 30)  # type: ignore[arg-type]
    for sent_at, task_id, name, args, kwargs, queue, opts in batch:
        shown = opts.get("headers") or {}
        dispatcher.task(
            "task-sent",
            timestamp=sent_at,
            uuid=task_id,
            root_id=opts.get("root_id") or task_id,
            parent_id=opts.get("parent_id"),
            name=name,
            args=shown.get("argsrepr", repr(tuple(args))),
            kwargs=shown.get("kwargsrepr", repr(kwargs)),
            retries=opts.get("retries", 0),
            eta=_iso(opts.get("eta")),
            expires=_iso(opts.get("expires")),
            queue=queue,
            exchange=opts.get("exchange") or "",
            routing_key=opts.get("routing_key") or queue,
        )
    return list(dispatcher._buffer)


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
    assert ours == _reference(batch)
    assert [json.loads(line)["uuid"] for line in ours] == ["id-1", "id-2", "id-3", "id-4"]


# Batches that switch between send plans: the per-plan text is reused for a run of sends of one
# plan (``_lines``), and each line must still be its own send's.
def test_runs_of_plans_interleaved_keep_each_sends_fields() -> None:
    plain: dict[str, Any] = {"root_id": None, "parent_id": None, "retries": 0, "exchange": "", "routing_key": None}
    hidden = {**plain, "headers": {"argsrepr": "(<secret>,)", "kwargsrepr": "{'pw': '***'}"}, "parent_id": "P"}
    rooted = {**plain, "root_id": "R", "routing_key": "rk"}
    batch = [
        (1700000000.5, "id-1", "t.a", [1], {}, "q", plain),
        (1700000000.6, "id-2", "t.a", [2], {}, "q", plain),
        (1700000000.7, "id-3", "t.a", ["pw"], {"pw": "x"}, "q", hidden),
        (1700000000.8, "id-4", "t.a", [3], {}, "q", plain),  # back to the first plan
        (1700000000.9, "id-5", "t.b", [], {}, "q", plain),  # the same options dict, another task
        (1700000001.0, "id-6", "t.b", [], {}, "other", plain),  # and another queue
        (1700000001.1, "id-7", "t.a", [], {"k": 1}, "q", rooted),
        (1700000001.2, "id-8", "t.a", [], {}, "q", hidden),
    ]
    ours = _lines(batch, EventDispatcher(Kept(), "gen1@host", batch=1 << 30))  # type: ignore[arg-type]
    assert ours == _reference(batch)
