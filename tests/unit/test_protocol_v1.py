"""A Celery client with ``task_protocol = 1`` sends everything in the body; chains are links.

Our worker must read the links (``callbacks``/``errbacks``), the chord and the group from that
body, as Celery's worker does (``proto1_to_proto2``): without them a protocol 1 chain stopped
after its first step (Celery's test_group_chains with task_protocol 1).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from engine.protocol.task import decode


def _wire(message: Any) -> bytes:
    body = base64.b64encode(json.dumps(message.body).encode()).decode()
    return json.dumps(
        {
            "body": body,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": message.headers,
            "properties": {
                **message.properties,
                "body_encoding": "base64",
                "delivery_info": {"exchange": "", "routing_key": "celery"},
                "delivery_tag": "tag-1",
            },
        }
    ).encode()


def test_a_protocol_1_message_keeps_its_links_chord_and_group() -> None:
    from celery import Celery

    app = Celery("v1", set_as_current=False)
    link, errback = app.signature("t.next", args=(1,)), app.signature("t.errback")
    chord_body = app.signature("t.body")
    message = app.amqp.as_task_v1(
        "id-1",
        "t.add",
        args=(1, 2),
        kwargs={"z": 3},
        group_id="g-1",
        group_index=2,
        callbacks=[link],
        errbacks=[errback],
        chord=chord_body,
    )
    decoded = decode(_wire(message), frozenset({"application/json"}))
    assert (decoded.id, decoded.name, decoded.args, decoded.kwargs) == ("id-1", "t.add", [1, 2], {"z": 3})
    assert [c["task"] for c in decoded.embed["callbacks"]] == ["t.next"]
    assert [e["task"] for e in decoded.embed["errbacks"]] == ["t.errback"]
    assert decoded.embed["chord"]["task"] == "t.body"
    assert decoded.embed["chain"] is None
    assert (decoded.headers["group"], decoded.headers["group_index"]) == ("g-1", 2)
