"""What a worker publishes when a chord's header completes and its body is itself a chord: the
messages stay the size of the workflow, whatever the nesting (Celery's ``_strip_chord_header_links``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from engine import App, chain, group
from engine.protocol import task as protocol
from engine.workflows import from_dict

WIDTH, LEVELS = 5, 6


@pytest.fixture
def app(redis_url: str, redis_client: redis.Redis) -> Iterator[App]:
    application = App("unit", broker=redis_url, backend=redis_url)
    yield application
    application.close()


def test_a_chain_of_wide_groups_sends_messages_that_grow_linearly(app: App, redis_client: redis.Redis) -> None:
    @app.task(name="unit.step")
    def step(*values: object) -> int:
        return 1

    steps = [group(step.si(i) for i in range(WIDTH))]
    steps += [group(step.s() for _ in range(WIDTH)) for _ in range(LEVELS - 1)]
    chain(*steps, step.s()).apply_async()
    sent: list[bytes] = redis_client.lrange("celery", 0, -1)  # type: ignore[assignment]
    assert len(sent) == WIDTH and max(len(raw) for raw in sent) < 64 * 1024
    first = protocol.decode(sent[-1], frozenset({"application/json"}))
    body = first.embed["chord"]  # the next levels, as the header's last task hands them on
    redis_client.delete("celery")
    from_dict(body, app).apply_async(([1] * WIDTH,))  # what the worker does when the header is complete
    dispatched = redis_client.lrange("celery", 0, -1)
    assert len(dispatched) == WIDTH
    # With each level's body copied onto every header task of the level before, the next level's
    # messages were WIDTH ** levels big (about 1.3 MB each here); they stay a few KB.
    assert max(len(raw) for raw in dispatched) < 64 * 1024
