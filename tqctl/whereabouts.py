"""Where a task no worker has seen is: waiting in a queue, or nowhere (purged, expired, never sent here).

Celery (``AsyncResult.state``) and Flower say PENDING for such a task forever: a purged one looks
exactly like one still queued. One bounded read of the queues (the next ``budget`` messages out,
headers only) either finds it, with its position, or says how much was searched: all of what
waits, or the first part of it. Never a read of every message on every call.
"""

from __future__ import annotations

from typing import Any

from engine.broker.inspect import NotHere

SEARCH_BUDGET = 10_000  # messages read at most for one task (a few hundred ms on a local Redis)


def locate(view: Any, task_id: str, budget: int = SEARCH_BUDGET) -> dict[str, Any]:
    """``{"queue", "position" (1: next out), "depth", "message"}`` when found; else ``queue`` None with
    ``searched`` (messages read), ``waiting`` (messages in the queues), ``queues`` (their names),
    ``complete`` (every waiting message read) and ``note`` (why queues cannot be read here)."""
    view.discover()  # queues nobody declared, as `tqctl queues` finds them (a key scan, no message read)
    names = view.queue_names()
    figures = sorted(view.queues(names), key=lambda q: q.depth)  # the small ones first: more read whole
    waiting = sum(q.depth for q in figures)
    searched = 0
    for queue in figures:
        take = min(queue.depth, budget - searched)
        if take <= 0:
            continue
        try:
            rows = view.peek(queue.name, take)
        except NotHere as exc:  # RabbitMQ: a message shows only when delivered
            return _not_found(figures, waiting, 0, str(exc))
        for position, row in enumerate(rows, 1):
            if row.get("id") == task_id:
                message = {"id": task_id, "name": row.get("name"), "queue": queue.name, **_repr_args(row)}
                return {"queue": queue.name, "position": position, "depth": queue.depth, "message": message}
        searched += len(rows)
    return _not_found(figures, waiting, searched, None)


def _repr_args(row: dict[str, Any]) -> dict[str, Any]:
    return {"args": row.get("args"), "kwargs": row.get("kwargs")}


def _not_found(figures: list[Any], waiting: int, searched: int, note: str | None) -> dict[str, Any]:
    return {
        "queue": None,
        "searched": searched,
        "waiting": waiting,
        "queues": [q.name for q in figures],
        "complete": note is None and searched >= waiting,
        "note": note,
    }


def nowhere_line(found: dict[str, Any]) -> str:
    """The queues' part of "what is known" about a task found nowhere, in words."""
    count = len(found["queues"])
    if found["note"]:
        return f"its queue cannot be searched ({found['note']})"
    if found["complete"]:
        return f"not among the {found['waiting']} message(s) waiting in the {count} queue(s) (all read)"
    return f"not among the next {found['searched']} of the {found['waiting']} message(s) waiting in {count} queue(s)"
