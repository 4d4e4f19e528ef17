"""``engine.beat.Service`` with remote control: a ticking beat answers ``ping`` as
``celerybeat@<host>``; a beat whose loop is stuck falls silent (what a liveness probe needs)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest

from engine import App
from engine.beat import Service, beat_nodename

pytestmark = pytest.mark.integration


def _until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_a_ticking_beat_answers_ping_and_a_wedged_one_falls_silent(broker_url: str) -> None:
    app = App("beat-rc", broker=broker_url, beat_enable_remote_control=True, beat_remote_control_max_tick_age=2.0)
    service = Service(app, max_interval=0.5, hostname=f"celerybeat-{uuid.uuid4().hex[:8]}@%h")
    node = beat_nodename(service.hostname)
    released = threading.Event()
    thread = threading.Thread(target=service.start, name="beat-under-test")
    thread.start()
    try:
        assert _until(lambda: app.control.ping(destination=[node], timeout=2.0) == [{node: {"ok": "pong"}}], 30)
        # Well past the 2 s staleness window, every ping is answered while the loop keeps ticking.
        until = time.monotonic() + 5.0
        while time.monotonic() < until:
            assert app.control.ping(destination=[node], timeout=2.0) == [{node: {"ok": "pong"}}]

        def wedged() -> float:
            released.wait()
            return 0.5

        service.scheduler.tick = wedged  # type: ignore[method-assign]
        assert _until(lambda: app.control.ping(destination=[node], timeout=1.0) == [], 20)
    finally:
        released.set()
        service.stop()
        thread.join(30)
        app.close()
    assert not thread.is_alive()
