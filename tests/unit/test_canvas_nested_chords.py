"""A chain of many wide groups (Celery's ``test_large_group_pipeline``): each group becomes a chord
whose body is the next chord, so the client builds chords nested ten deep.

Our client used to copy every header task's reference to its chord body separately, so
preparing the chain (and the message) grew by the group width at each level: depth 10 of width 25
never finished. Celery 5.7 shares those references when it clones and sends each body only
once, in its chord's kwargs; these tests check the message has exactly that shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from engine import App, chain, group
from engine.canvas import Signature
from engine.signals import before_task_publish

WIDTH, LEVELS = 25, 10


@pytest.fixture
def app(redis_url: str, redis_client: redis.Redis) -> Iterator[App]:
    app = App("unit-nested-chords", broker=redis_url, backend=redis_url)
    yield app
    app.close()


def _count(data: Any, name: str) -> int:
    """How many signatures of task ``name`` the JSON value holds, at any depth."""
    if isinstance(data, dict):
        own = 1 if data.get("task") == name else 0
        return own + sum(_count(v, name) for v in data.values())
    if isinstance(data, list):
        return sum(_count(v, name) for v in data)
    return 0


def test_a_deep_pipeline_of_wide_groups_sends_each_level_once(app: App) -> None:
    step = app.task(name="nested.step")(lambda *values: sum(values))
    total = app.task(name="nested.total")(lambda values: sum(values))
    steps = [group(step.si(1) for _ in range(WIDTH))]
    steps.extend(group(step.s() for _ in range(WIDTH)) for _ in range(LEVELS - 1))
    bodies: list[Any] = []

    def capture(sender: Any = None, body: Any = None, **_: Any) -> None:
        bodies.append(json.loads(json.dumps(body)))

    before_task_publish.connect(capture, weak=False)
    try:
        result = chain(*steps, total.s(), app=app).apply_async()
    finally:
        before_task_publish.disconnect(capture)

    assert result is not None
    assert len(bodies) == WIDTH  # only the first level is sent; each level after it is its chord's body
    for body in bodies:
        _, _, embed = body
        # every deeper level's members once, in their chord's header; the last step once, at the bottom
        assert _count(embed, "nested.step") == WIDTH * (LEVELS - 1)
        assert _count(embed, "nested.total") == 1


def test_clone_copies_a_shared_part_once_and_keeps_it_shared() -> None:
    body = Signature("nested.total", (), {"deep": {"x": [1, 2]}})
    parent = Signature("nested.outer", (), {"a": body, "b": body})
    copy = parent.clone()
    assert copy["kwargs"]["a"]["kwargs"] == {"deep": {"x": [1, 2]}}
    assert copy["kwargs"]["a"] is copy["kwargs"]["b"]
    assert copy["kwargs"]["a"] is not body
