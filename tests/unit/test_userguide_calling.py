"""User Guide, Tasks ("Hiding sensitive information in arguments"): ``apply_async(argsrepr=...,
kwargsrepr=...)`` is what the message's headers, and so the worker's log, events, the console and
``inspect``, show instead of the arguments; the task still gets the real ones. Checked against the
message a Celery 5.7 client publishes for the same call."""

from __future__ import annotations

import json
from typing import Any

import celery
import redis

from engine import App
from engine.events.dispatcher import EventDispatcher
from engine.events.sent import _lines


class Kept:
    """A fanout that keeps nothing (the lines are read from ``_lines``)."""

    def publish(self, exchange: str, key: str, raw: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def _last_message(client: redis.Redis) -> dict[str, Any]:
    return json.loads(client.lpop("celery") or b"{}")  # type: ignore[arg-type]


def test_argsrepr_and_kwargsrepr_replace_the_shown_arguments(redis_url: str, redis_client: redis.Redis) -> None:
    def charge(card: str, amount: int = 0) -> None:
        """Takes a card number that must not be logged."""

    theirs = celery.Celery("ug_calling", broker=redis_url, set_as_current=False)
    ours = App("ug_calling", broker=redis_url, backend=redis_url)
    redis_client.delete("celery")
    shown = {"argsrepr": "('****',)", "kwargsrepr": "{'amount': '***'}"}
    headers = []
    for app in (theirs, ours):
        app.task(name="ug.charge")(charge).apply_async(("4111 1111",), {"amount": 5}, **shown)
        message = _last_message(redis_client)
        headers.append({key: message["headers"][key] for key in shown})
        assert json.loads(_body(message))[0] == ["4111 1111"]  # the task still gets the real ones
    assert headers[0] == headers[1] == shown
    ours.task(name="ug.plain")(charge).delay("visible")
    assert _last_message(redis_client)["headers"]["argsrepr"] == "('visible',)"  # without them: the args
    ours.close()
    theirs.close()


def _body(message: dict[str, Any]) -> str:
    import base64

    return base64.b64decode(message["body"]).decode()


def test_the_task_sent_event_shows_argsrepr() -> None:
    options = {"root_id": None, "parent_id": None, "retries": 0, "exchange": "", "routing_key": None}
    hidden = {**options, "headers": {"argsrepr": "('****',)", "kwargsrepr": "{}"}}
    batch = [
        (1700000000.5, "id-1", "ug.charge", ["4111 1111"], {"amount": 5}, "celery", hidden),
        (1700000001.0, "id-2", "ug.charge", ["visible"], {}, "celery", options),
    ]
    dispatcher = EventDispatcher(Kept(), "gen1@host", batch=1 << 30)  # type: ignore[arg-type]
    lines = [json.loads(line) for line in _lines(batch, dispatcher)]
    assert [(e["args"], e["kwargs"]) for e in lines] == [("('****',)", "{}"), ("('visible',)", "{}")]


def test_the_calling_guides_connection_pool_snippet(redis_url: str, redis_client: redis.Redis) -> None:
    ours = App("ug_pool", broker=redis_url, backend=redis_url)
    theirs = celery.Celery("ug_pool", broker=redis_url, set_as_current=False)
    redis_client.delete("celery")
    for app in (theirs, ours):
        add = app.task(name="ug.add")(_add)
        with add.app.pool.acquire(block=True) as connection:
            results = [add.apply_async((2, 2), connection=connection) for _ in range(3)]
        assert len({r.id for r in results}) == 3
        with app.connection_for_write() as conn:
            assert conn.as_uri() == redis_url
    assert redis_client.llen("celery") == 6  # three messages from each
    redis_client.delete("celery")
    ours.close()
    theirs.close()


def _add(x: int, y: int) -> int:
    return x + y
