"""A worker's task events, written as JSON text for speed, read back as Celery's receivers read them."""

from __future__ import annotations

import base64
import json
import math
import os

from engine.events.dispatcher import EventDispatcher
from engine.protocol import envelope, events


class Capture:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes]] = []

    def publish(self, exchange: str, key: str, raw: bytes) -> None:
        self.sent.append((exchange, key, raw))


def flushed(dispatcher: EventDispatcher, capture: Capture) -> list[dict]:
    dispatcher.flush()
    exchange, key, raw = capture.sent[-1]
    assert (exchange, key) == ("celeryev", "task.multi")
    return events.decode(raw)


def test_batched_events_carry_celerys_fields_in_order_with_awkward_values() -> None:
    capture = Capture()
    dispatcher = EventDispatcher(capture, 'w1@host "quoted"')  # type: ignore[arg-type]
    dispatcher.task(
        "task-received",
        uuid='id"with\\quotes',
        name="shop.é",
        args="(1, 'ü')",
        kwargs="{}",
        root_id=None,
        retries=0,
        eta=None,
        nested=[1, {"a": None}],
        flag=True,
    )
    dispatcher.task("task-started", uuid="u2", pid=4242)
    dispatcher.task("task-succeeded", uuid="u2", result="None", runtime=0.25, timestamp=1700000000.5)
    dispatcher.task("task-failed", uuid="u3", exception="ValueError('x')", traceback="line\n\tline", odd=math.inf)
    received, started, succeeded, failed = flushed(dispatcher, capture)
    assert list(received) == [
        "hostname",
        "utcoffset",
        "pid",
        "clock",
        "uuid",
        "name",
        "args",
        "kwargs",
        "root_id",
        "retries",
        "eta",
        "nested",
        "flag",
        "timestamp",
        "type",
    ]
    assert received["hostname"] == 'w1@host "quoted"' and received["uuid"] == 'id"with\\quotes'
    assert received["name"] == "shop.é" and received["args"] == "(1, 'ü')" and received["root_id"] is None
    assert received["nested"] == [1, {"a": None}] and received["flag"] is True and received["pid"] == os.getpid()
    assert received["type"] == "task-received" and isinstance(received["timestamp"], float)
    assert started["pid"] == 4242
    body = base64.b64decode(json.loads(capture.sent[-1][2])["body"]).decode()
    assert body.count('"pid"') == 4, "a field given by the caller replaces the default, not repeats it"
    assert succeeded["timestamp"] == 1700000000.5 and succeeded["runtime"] == 0.25
    assert failed["traceback"] == "line\n\tline" and failed["odd"] == math.inf
    assert [e["clock"] for e in (received, started, succeeded, failed)] == [1, 2, 3, 4]


def test_the_batch_is_a_kombu_envelope_with_a_base64_body() -> None:
    capture = Capture()
    dispatcher = EventDispatcher(capture, "w1@host")  # type: ignore[arg-type]
    dispatcher.task("task-started", uuid="u1")
    dispatcher.flush()
    doc = json.loads(capture.sent[-1][2])
    assert doc["properties"]["body_encoding"] == "base64" and doc["headers"] == {"hostname": "w1@host"}
    assert doc["properties"]["delivery_info"] == {"exchange": "celeryev", "routing_key": "task.multi"}
    payload, _ = envelope.decode(capture.sent[-1][2])
    assert [e["uuid"] for e in payload] == ["u1"]


def test_disabled_dispatcher_buffers_nothing() -> None:
    capture = Capture()
    dispatcher = EventDispatcher(capture, "w1@host", enabled=False)  # type: ignore[arg-type]
    dispatcher.task("task-started", uuid="u1")
    dispatcher.flush()
    assert capture.sent == []


def test_a_full_batch_goes_out_on_its_own() -> None:
    capture = Capture()
    dispatcher = EventDispatcher(capture, "w1@host", batch=3)  # type: ignore[arg-type]
    for n in range(7):
        dispatcher.task("task-started", uuid=f"u{n}")
    assert [len(events.decode(raw)) for _, _, raw in capture.sent] == [3, 3]


def test_task_events_ask_the_system_for_no_process_id_yet_a_forked_child_signs_its_own(getpid_calls: list[int]) -> None:
    """Three events a task: ``os.getpid()`` is a system call each (0.19 us here). The pid is the
    one ``engine.forks`` keeps, so events still carry the process's own after a fork."""
    capture = Capture()
    dispatcher = EventDispatcher(capture, "w1@host")  # type: ignore[arg-type]
    dispatcher.task("task-received", uuid="u0")
    getpid_calls.clear()
    for n in range(3):
        dispatcher.task("task-succeeded", uuid=f"u{n}")
    assert getpid_calls == []
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            dispatcher.task("task-started", uuid="in-child")
            os.write(write, json.dumps(flushed(dispatcher, capture)[-1]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        event = json.loads(pipe.read())
    os.waitpid(child, 0)
    assert (event["uuid"], event["pid"]) == ("in-child", child)
    assert {e["pid"] for e in flushed(dispatcher, capture)} == {os.getpid()}
