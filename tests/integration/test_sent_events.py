"""Our clients announce what they send (``task-sent``), so a console sees a task before any worker
takes it; batched, so a client sending thousands pays a handful of publishes; off when told."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from engine import App
from engine.broker.fanout import RedisFanout
from engine.protocol import events


class Bus:
    """A raw subscriber on the event exchange that counts messages as well as events."""

    def __init__(self, url: str) -> None:
        self.fanout = RedisFanout(url)
        self.pubsub = self.fanout.subscribe([self.fanout.channel(events.EXCHANGE, "#")])
        self.messages = 0

    def collect(self, want: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(found) < want and time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.1)
            if message and message.get("type") in ("message", "pmessage"):
                self.messages += 1
                found += [e for e in events.decode(message["data"]) if e.get("type") == "task-sent"]
        return found

    def close(self) -> None:
        self.pubsub.close()
        self.fanout.close()


def test_delay_and_send_many_announce_each_task_with_no_worker_running(broker_url: str) -> None:
    bus = Bus(broker_url)
    client = App("sender", broker=broker_url, backend=broker_url)
    try:
        bus.collect(0, 0.2)  # subscribed before anything is sent: pub/sub keeps nothing
        one = client.send_task("shop.charge", [7], {"amount": 12}, countdown=60, queue="billing")
        many = client.send_many("shop.add", [((i, i), None) for i in range(500)])
        sent = bus.collect(501)
        by_id = {e["uuid"]: e for e in sent}
        assert len(by_id) == 501 and set(by_id) == {one.id, *(r.id for r in many)}
        first = by_id[one.id]
        assert first["name"] == "shop.charge" and first["args"] == "(7,)" and first["kwargs"] == "{'amount': 12}"
        assert first["queue"] == "billing" and first["eta"] and first["root_id"] == one.id
        assert first["hostname"] == f"gen{os.getpid()}@{socket.gethostname()}"
        assert by_id[many[-1].id]["args"] == "(499, 499)"
        assert bus.messages < 50, f"501 sends took {bus.messages} publishes, not a few task.multi batches"
    finally:
        client.close()
        bus.close()


def test_turned_off_nothing_is_announced(broker_url: str) -> None:
    bus = Bus(broker_url)
    client = App("quiet", broker=broker_url, backend=broker_url, task_send_sent_event=False)
    loud = App("loud", broker=broker_url, backend=broker_url)
    try:
        bus.collect(0, 0.2)
        silent = client.send_task("shop.add", [1, 1])
        marker = loud.send_task("shop.add", [2, 2])  # a later event proves the bus was listening
        ids = {e["uuid"] for e in bus.collect(1)}
        assert marker.id in ids and silent.id not in ids
    finally:
        client.close()
        loud.close()
        bus.close()
