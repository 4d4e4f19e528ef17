"""kombu's JSON type tags both ways: what a Celery client sends decodes to real values here, and
what our client sends decodes to real values in a Celery worker (kombu.utils.json is the reference)."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import pytest
from kombu.utils import json as kombu_json

from engine import serialization
from engine.protocol import task as protocol

JSON = "application/json"
ACCEPT = frozenset({JSON})
VALUES = [
    dt.datetime(2026, 12, 5, 12, 30, 1, 123456, tzinfo=dt.timezone.utc),
    dt.datetime(2026, 12, 5, 12, 30),
    dt.date(2026, 12, 5),
    dt.time(12, 30, 1),
    decimal.Decimal("3.14159265358979323846"),
    uuid.UUID("6b9ab6b6-3f5a-4a8c-9d3e-0c4f8d2a9b11"),
    b"plain bytes",
    b"\xff\xfe not utf-8",
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_what_kombu_encodes_we_decode(value: object) -> None:
    data = kombu_json.dumps([[value], {"k": value}, {}]).encode()
    args, kwargs, _ = serialization.loads(data, JSON, ACCEPT)
    assert args == [value] and kwargs == {"k": value}
    assert type(args[0]) is type(value)


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_what_we_encode_kombu_decodes(value: object) -> None:
    data, content_type = serialization.dumps([[value], {"k": value}, {}])
    assert content_type == JSON
    assert data.decode() == kombu_json.dumps([[value], {"k": value}, {}])  # byte for byte
    args, kwargs, _ = kombu_json.loads(data)
    assert args == [value] and kwargs == {"k": value}


def test_a_task_sent_with_a_datetime_argument_receives_a_datetime() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    _, raw = protocol.build("proj.at", [when], {"blob": b"\x00\x01"})
    message = protocol.decode(raw, ACCEPT)
    assert message.args == [when] and message.kwargs == {"blob": b"\x00\x01"}


def test_only_an_exact_two_key_tag_is_decoded() -> None:
    data = b'[{"__type__": "datetime", "__value__": "2026-01-01T00:00:00", "x": 1}, {"__type__": "uuid"}]'
    assert serialization.loads(data, JSON, ACCEPT) == [
        {"__type__": "datetime", "__value__": "2026-01-01T00:00:00", "x": 1},
        {"__type__": "uuid"},
    ]


def test_an_unknown_tag_is_a_malformed_message_not_a_crash() -> None:
    body = b'[[{"__type__": "frobnicate", "__value__": 1}], {}, {}]'
    with pytest.raises(ValueError, match="frobnicate"):
        serialization.loads(body, JSON, ACCEPT)
    with pytest.raises(ValueError):
        kombu_json.loads(body)  # kombu refuses it too
    _, raw = protocol.build("proj.x", [1], {})
    envelope = serialization.json_loads(raw)
    import base64

    envelope["body"] = base64.b64encode(body).decode()
    with pytest.raises(protocol.MalformedMessage) as caught:
        protocol.decode(serialization.json_dumps(envelope).encode(), ACCEPT)
    assert caught.value.reason == "bad_body"


def test_results_read_back_with_their_types(redis_client) -> None:  # noqa: ANN001 - fixture
    from engine.backend.redis import RedisBackend
    from engine.protocol.results import meta

    url = redis_client.connection_pool.settings.path
    backend = RedisBackend(f"redis+socket://{url}")
    when = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
    backend.store("t1", meta("t1", "SUCCESS", {"at": when, "id": uuid.UUID(int=5)}))
    assert backend.get_meta("t1")["result"] == {"at": when, "id": uuid.UUID(int=5)}
    backend.close()


def test_an_argument_that_cannot_be_encoded_raises_kombus_encode_error_as_celery() -> None:
    """Celery's ``delay`` raises kombu's ``EncodeError`` for such an argument (kombu wraps the
    encoder's error); code catching it must catch ours. Nothing is sent either way."""
    import celery
    from kombu.exceptions import EncodeError

    from engine import App

    theirs = celery.Celery("theirs", broker="memory://")
    ours = App("ours", broker="redis://127.0.0.1:1/0")  # never reached: encoding comes first
    for app in (theirs, ours):

        @app.task(name="enc.echo")
        def echo(x: object) -> object:
            return x

        with pytest.raises(EncodeError, match="not JSON serializable"):
            echo.delay(object())
        with pytest.raises(EncodeError):
            echo.apply_async((), {"x": object()})
    ours.close()
    with pytest.raises(EncodeError):  # the pickle serializer's refusal too
        serialization.dumps([lambda: 1], "pickle")
