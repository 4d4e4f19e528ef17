"""What an SQS message body becomes for the worker, and where an app's SQS settings travel."""

from __future__ import annotations

import base64
import json

from engine.app import App
from engine.broker.sqs import _envelope

ENVELOPE = {
    "body": "W1tdLCB7fSwge31d",
    "content-encoding": "utf-8",
    "content-type": "application/json",
    "headers": {"id": "t1", "task": "x.add"},
    "properties": {"body_encoding": "base64", "delivery_tag": "theirs", "priority": 0},
}


def test_a_celery_body_base64_encoded_becomes_the_envelope_with_our_tag_and_delivery_info() -> None:
    body = base64.b64encode(json.dumps(ENVELOPE).encode()).decode()  # kombu's sqs_base64_encoding
    got = json.loads(_envelope(body, "sqs.7", "celery", True))
    assert got["headers"] == ENVELOPE["headers"] and got["body"] == ENVELOPE["body"]
    assert got["properties"]["delivery_tag"] == "sqs.7"
    assert got["properties"]["delivery_info"] == {"exchange": "", "routing_key": "celery", "redelivered": True}


def test_a_plain_json_body_is_read_too() -> None:
    got = json.loads(_envelope(json.dumps(ENVELOPE), "sqs.1", "q", False))
    assert got["properties"]["delivery_info"]["redelivered"] is False


def test_a_body_that_is_no_envelope_is_handed_over_as_it_came() -> None:
    for body in ("[1, 2", "[1, 2]", "plain text", "", "abcd", base64.b64encode(b"[1]").decode()):
        assert _envelope(body, "sqs.1", "celery", False) == body.encode()


def test_broker_transport_options_ride_on_an_sqs_url_only() -> None:
    app = App("t", broker="sqs://")
    app.conf.broker_transport_options = {"region": "eu-west-1", "visibility_timeout": 60}
    url = app.broker_url()
    assert str(url) == "sqs://" and url.options["sqs_options"] == {"region": "eu-west-1", "visibility_timeout": 60}
    app.conf.broker_url = "redis://localhost:6379/0"
    assert "sqs_options" not in getattr(app.broker_url(), "options", {})
