"""What a Redis send tells once the broker has the message (``after_task_publish``, the task-sent
event) comes after the LPUSH landed, on the private real server; a publish connection killed
between sends is retried, and a broker gone after a send is one line with nothing told."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from engine import App, signals
from engine.bundled import start_private
from engine.exceptions import BrokerUnavailable

QUEUE = "sent.q"


@pytest.fixture
def app(redis_url: str, redis_client: redis.Redis) -> Iterator[App]:
    app = App("sent", broker=redis_url, backend=redis_url, task_default_queue=QUEUE)
    yield app
    app.close()


def test_after_publish_signal_and_event_find_the_message_in_the_list(app: App, redis_client: redis.Redis) -> None:
    @app.task(name="sent.noop")
    def noop() -> None:
        pass

    noop.delay()
    seen: list[tuple[str, int]] = []

    def after(**_: Any) -> None:
        seen.append(("after_task_publish", int(redis_client.llen(QUEUE))))

    sent = app.sent_events
    assert sent is not None
    record = sent.record

    def told(*args: Any, **kwargs: Any) -> None:
        seen.append(("task-sent", int(redis_client.llen(QUEUE))))
        record(*args, **kwargs)

    sent.record = told  # type: ignore[method-assign]
    signals.after_task_publish.connect(after)
    try:
        noop.delay()
    finally:
        signals.after_task_publish.disconnect(after)
    assert seen == [("after_task_publish", 2), ("task-sent", 2)]


def test_a_connection_killed_between_sends_is_retried_and_the_event_still_told(
    app: App, redis_client: redis.Redis
) -> None:
    """A server-side kill of the thread's publish connection: the send is retried through
    redis-py's policy, and the task-sent event and handle follow."""

    @app.task(name="sent.noop2")
    def noop() -> None:
        pass

    noop.delay()
    conn = app.broker._conns.get()  # type: ignore[attr-defined]
    ours = {c["id"] for c in redis_client.client_list()} - {str(redis_client.client_id())}
    for client_id in ours:
        redis_client.client_kill_filter(_id=client_id)
    sent = app.sent_events
    assert sent is not None
    told: list[str] = []
    record = sent.record
    sent.record = lambda task_id, *a, **k: (told.append(task_id), record(task_id, *a, **k))  # type: ignore[method-assign]
    result = noop.delay()
    assert told == [result.id]
    assert redis_client.llen(QUEUE) == 2
    assert conn is app.broker._conns.get()  # type: ignore[attr-defined]


def test_a_broker_stopped_after_a_send_raises_the_one_line_error_and_tells_nothing(tmp_path: Path) -> None:
    """The thread's connection is open when the server goes: the next send raises one line, and
    no task-sent event is told for it."""
    server = start_private(tmp_path / "gone")
    app = App("gone", broker=server.url, backend=None, task_default_queue=QUEUE)
    try:

        @app.task(name="sent.noop3")
        def noop() -> None:
            pass

        noop.delay()
        sent = app.sent_events
        assert sent is not None
        told: list[str] = []
        sent.record = lambda task_id, *a, **k: told.append(task_id)  # type: ignore[method-assign]
        server.stop()
        with pytest.raises(BrokerUnavailable) as caught:
            noop.delay()
        assert "\n" not in str(caught.value) and server.url.split("://")[0] in str(caught.value)
        assert told == []
    finally:
        app.close()
        server.stop()
