"""``app.control.inspect()`` as Celery code calls it: an object with one method per command,
answered by a real worker of ours (the worker's replies themselves are checked elsewhere)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from engine import App
from tests.integration.harness import WorkerProcess

pytestmark = pytest.mark.integration


def test_inspect_object_asks_the_worker_and_says_none_when_nobody_answers(
    broker_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker(name="insp1")
    node = f"insp1@{socket.gethostname()}"
    app = App("client", broker=broker_url)
    try:
        inspect: Any = app.control.inspect(timeout=2.0)
        assert inspect.ping() == {node: {"ok": "pong"}}
        registered = inspect.registered()
        assert "tests.apps.shop.add" in registered[node]
        assert inspect.active() == {node: []}
        assert inspect.query_task("no-such-id") == {node: {}}
        # One destination by name: that node's reply itself, as Celery's Inspect gives it.
        assert app.control.inspect(destination=node, timeout=5.0).ping() == {"ok": "pong"}
        # Nobody by that name: None, not an empty dict; and a wait longer than the Redis client's
        # socket timeout (5 s) ends as "no reply", not as a TimeoutError.
        assert app.control.inspect(destination=["ghost@nowhere"], timeout=6.0).ping() is None
        # The older call shape keeps working: one command, merged replies.
        assert app.control.inspect("ping", timeout=2.0) == {node: {"ok": "pong"}}
    finally:
        app.close()
