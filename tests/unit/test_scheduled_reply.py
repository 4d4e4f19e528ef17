"""``inspect scheduled`` lists what a worker holds until due, in Celery's reply shape: the ETA the
message gave, the worker timer's priority, and the request info an ``inspect active`` shows."""

from __future__ import annotations

import datetime as dt

from engine.broker.eta_hold import EtaHold
from engine.protocol import task as protocol
from engine.worker.remote import scheduled_item

# Celery 5.7's Request.info keys (celery/worker/request.py), in its order.
REQUEST_INFO = [
    "id",
    "name",
    "args",
    "kwargs",
    "type",
    "hostname",
    "time_start",
    "acknowledged",
    "delivery_info",
    "worker_pid",
]


def test_the_hold_lists_what_it_still_holds_soonest_first_and_keeps_it() -> None:
    hold: EtaHold[str] = EtaHold()
    for eta, tag in ((30.0, "late"), (10.0, "soon"), (20.0, "acked"), (10.0, "soon-too")):
        hold.push(eta, tag)
    listed = hold.listing(lambda tag: tag != "acked")
    assert listed == [(10.0, "soon"), (10.0, "soon-too"), (30.0, "late")]  # same ETA: arrival order
    assert len(hold) == 4 and hold.pop_due(100.0, 10, lambda tag: True) == ["soon", "soon-too", "acked", "late"]
    assert hold.listing(lambda tag: True) == []


def test_an_item_is_celerys_shape_with_the_messages_own_eta() -> None:
    eta = dt.datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc)
    task_id, raw = protocol.build("shop.add", (2, 3), {"x": 1}, eta=eta, priority=4, routing_key="celery")
    message = protocol.decode(raw, frozenset({"application/json"}))
    item = scheduled_item(eta.timestamp(), message, "w1@host")
    assert list(item) == ["eta", "priority", "request"]
    assert item["eta"] == eta.isoformat() and dt.datetime.fromisoformat(item["eta"]) == eta
    assert item["priority"] == 6  # Celery's timer entry priority, not the message's 4
    request = item["request"]
    assert list(request) == REQUEST_INFO
    assert (request["id"], request["name"], request["type"]) == (task_id, "shop.add", "shop.add")
    assert (request["args"], request["kwargs"], request["hostname"]) == ([2, 3], {"x": 1}, "w1@host")
    assert (request["time_start"], request["acknowledged"], request["worker_pid"]) == (None, False, None)
    assert request["delivery_info"]["routing_key"] == "celery" and request["delivery_info"]["priority"] == 4
