"""What a plain ``delay()`` costs on the client stays off the slow paths (issue 17's target,
``delay()`` at 90% of raw LPUSH): no setting read through ``Settings.__getattr__``, no
``os.getpid()`` system call per publish, no class-hierarchy walk per option once a task's
options are known. Each of these was measurable in the benchmark; the behaviour they keep
(fork-safety, settings and task attributes changed later) is tested beside them, on the private
real server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from engine import App
from engine.broker import connect
from engine.config import Settings

QUEUE = "cost.q"


@pytest.fixture
def app(redis_url: str, redis_client: redis.Redis) -> Iterator[App]:
    app = App("cost", broker=redis_url, backend=redis_url, task_default_queue=QUEUE)
    yield app
    app.close()


def _noop(app: App, name: str = "cost.noop") -> Any:
    @app.task(name=name, ignore_result=True)
    def noop() -> None:
        pass

    return noop


def test_a_plain_delay_reads_no_setting_through_the_attribute_fallback(
    app: App, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    noop = _noop(app)
    noop.delay()  # first send: plans made, connections opened
    fallback = Settings.__getattr__
    read: list[str] = []

    def counted(self: Settings, name: str) -> Any:
        read.append(name)
        return fallback(self, name)

    monkeypatch.setattr(Settings, "__getattr__", counted)
    noop.delay()
    assert read == []
    assert redis_client.llen(QUEUE) == 2


def test_task_sent_events_still_follow_the_setting(app: App) -> None:
    assert app.sent_events is not None  # the engine's default: on
    app.conf.task_send_sent_event = False
    assert app.sent_events is None
    app.conf.task_send_sent_event = True
    assert app.sent_events is not None


def test_a_publish_asks_the_system_for_no_process_id(
    app: App, redis_client: redis.Redis, getpid_calls: list[int]
) -> None:
    noop = _noop(app)
    noop.delay()
    getpid_calls.clear()
    for _ in range(3):
        noop.delay()
    assert getpid_calls == []
    assert redis_client.llen(QUEUE) == 4


def test_a_forked_child_never_publishes_on_its_parents_connection(redis_url: str, redis_client: redis.Redis) -> None:
    """A broker object (not the app's, which is reopened after a fork anyway) used on both sides
    of a fork: the child gets a connection of its own, and the parent's stays in step."""
    broker = connect(redis_url)
    try:
        broker.publish(QUEUE, b"parent-1")
        parent_conn = broker._conns.get()  # type: ignore[attr-defined]
        parent_conn.send_command("CLIENT", "ID")
        parent_id = parent_conn.read_response()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through its exit status
            try:
                broker.publish(QUEUE, b"child")
                conn = broker._conns.get()  # type: ignore[attr-defined]
                conn.send_command("CLIENT", "ID")
                os._exit(0 if conn is not parent_conn and conn.read_response() != parent_id else 3)
            except BaseException:
                os._exit(4)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        broker.publish(QUEUE, b"parent-2")
        assert broker._conns.get() is parent_conn  # type: ignore[attr-defined]
        assert redis_client.lrange(QUEUE, 0, -1) == [b"parent-2", b"child", b"parent-1"]
    finally:
        broker.close()
