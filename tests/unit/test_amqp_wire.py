"""The envelope ↔ AMQP message conversion (engine/broker/amqp_wire.py), without a server."""

from __future__ import annotations

import datetime as dt
import decimal
import json

from engine.broker.amqp_wire import Outgoing, envelope
from engine.protocol import task as protocol

ALL = frozenset({"application/json"})


def test_a_built_task_survives_the_trip_through_amqp_parts() -> None:
    task_id, raw = protocol.build("shop.add", (1, "é"), {"k": None}, queue="high", priority=7, reply_to="r1")
    out = Outgoing(raw)
    assert out.content_type == "application/json" and out.properties["delivery_mode"] == 2
    assert out.properties["correlation_id"] == task_id and out.properties["priority"] == 7
    assert "delivery_info" not in out.properties and "body_encoding" not in out.properties
    back = envelope(
        out.body.decode(), out.content_type, out.content_encoding, out.headers, out.properties, "", "high", True, "0.1"
    )
    message = protocol.decode(back, ALL)
    assert (message.id, message.args, message.kwargs) == (task_id, [1, "é"], {"k": None})
    assert message.delivery_info == {"exchange": "", "routing_key": "high", "priority": 7, "redelivered": True}


def test_expires_becomes_kombus_expiration_in_seconds() -> None:
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30)
    out = Outgoing(protocol.build("t", expires=expires)[1])
    assert out.expiration is not None and 25 < out.expiration <= 30
    assert Outgoing(protocol.build("t")[1]).expiration is None


def test_amqp_only_header_types_carry_kombus_json_type_tags() -> None:
    headers = {"when": dt.datetime(2026, 1, 2, 3, 4, 5), "amount": decimal.Decimal("1.50"), "blob": b"\xffab"}
    raw = envelope(b"[[], {}, {}]", None, None, headers, {}, "x", "celery", False, "t")
    got = json.loads(raw)["headers"]
    assert got == {
        "when": {"__type__": "datetime", "__value__": "2026-01-02T03:04:05"},
        "amount": {"__type__": "decimal", "__value__": "1.50"},
        "blob": {"__type__": "base64", "__value__": "/2Fi"},
    }
