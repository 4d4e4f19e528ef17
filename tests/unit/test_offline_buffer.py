"""Task events and history records the broker could not take wait for the next flush, oldest
first and bounded, instead of being dropped (Celery's dispatcher buffers while offline too)."""

from __future__ import annotations

import contextlib
import json
import socket

import pytest

from engine import resp
from engine.events import dispatcher
from engine.events.dispatcher import EventDispatcher
from engine.history import RECORDS, History, HistoryWriter
from engine.protocol import events
from engine.redisconn import client_from_url


class Fanout:
    """Publishes into a list, or refuses while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.sent: list[bytes] = []
        self.tries = 0

    def publish(self, exchange: str, key: str, raw: bytes) -> None:
        self.tries += 1
        if self.down:
            raise resp.ConnectionError("broker away")
        self.sent.append(raw)


def _uuids(sent: list[bytes]) -> list[str]:
    return [e["uuid"] for raw in sent for e in events.decode(raw)]


def test_events_the_broker_refused_go_out_first_at_the_next_flush() -> None:
    fanout = Fanout()
    d = EventDispatcher(fanout, "w@h", batch=3)  # type: ignore[arg-type]
    fanout.down = True
    for i in range(5):
        with contextlib.suppress(resp.ConnectionError):  # the third fills a batch: its flush fails
            d.task("task-succeeded", uuid=f"t{i}", result="1", runtime=0.1)
    with pytest.raises(resp.ConnectionError):
        d.flush()
    fanout.down = False
    d.task("task-succeeded", uuid="t5", result="1", runtime=0.1)
    d.flush()
    assert _uuids(fanout.sent) == [f"t{i}" for i in range(6)]
    assert [len(events.decode(raw)) for raw in fanout.sent] == [3, 3]  # a batch's size a message


def test_while_the_broker_refuses_a_full_buffer_does_not_retry_on_every_task() -> None:
    fanout = Fanout()
    d = EventDispatcher(fanout, "w@h", batch=2)  # type: ignore[arg-type]
    fanout.down = True
    d.task("task-received", uuid="a")
    with pytest.raises(resp.ConnectionError):
        d.task("task-received", uuid="b")  # full: the task's own flush meets the outage
    tries = fanout.tries
    for i in range(20):
        d.task("task-received", uuid=f"c{i}")
    assert fanout.tries == tries  # left to the worker's upkeep ticks until RETRY_AFTER passes


def test_past_the_offline_bound_the_oldest_events_are_dropped_and_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(dispatcher, "OFFLINE_KEEP", 4)
    fanout = Fanout()
    d = EventDispatcher(fanout, "w@h", batch=100)  # type: ignore[arg-type]
    fanout.down = True
    for i in range(6):
        d.task("task-received", uuid=f"t{i}")
    with pytest.raises(resp.ConnectionError):
        d.flush()
    fanout.down = False
    d.flush()
    assert _uuids(fanout.sent) == ["t2", "t3", "t4", "t5"]
    assert "dropped 2 task event(s)" in caplog.text


def _away() -> resp.Client:
    """A client of a port nobody listens on, without retries."""
    return client_from_url(f"redis://127.0.0.1:{_closed_port()}/0", socket_connect_timeout=1, retry=resp.Retry(0))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_history_records_a_flush_could_not_write_are_written_by_the_next(redis_client: resp.Client) -> None:
    redis_client.delete(RECORDS)
    away = _away()
    writer = HistoryWriter(away)
    for i in range(3):
        writer.record({"id": f"r{i}", "name": "t", "state": "SUCCESS"})
    with pytest.raises(resp.ConnectionError):
        writer.flush()
    writer.record({"id": "r3", "name": "t", "state": "SUCCESS"})
    writer.client = redis_client  # the broker is back
    writer.flush()
    found = [r["id"] for r in History(redis_client).records()]
    assert found == ["r3", "r2", "r1", "r0"]  # newest first, as if nothing had happened
    assert all("finished" in json.loads(raw) for raw in redis_client.lrange(RECORDS, 0, -1))


def test_history_keeps_at_most_keep_records_while_the_broker_is_away(redis_client: resp.Client) -> None:
    redis_client.delete(RECORDS)
    away = _away()
    writer = HistoryWriter(away, keep=3)
    for i in range(5):
        writer.record({"id": f"r{i}", "name": "t", "state": "SUCCESS"})
    with pytest.raises(resp.ConnectionError):
        writer.flush()
    writer.client = redis_client
    writer.flush()
    assert [r["id"] for r in History(redis_client).records()] == ["r4", "r3", "r2"]
