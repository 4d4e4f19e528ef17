"""Every header and property a worker reads, given every JSON type: decoding either refuses the message
(``MalformedMessage``, which the worker dead-letters) or gives one the worker can read end to end.

Issue 13 item 1: ``"retries": "abc"`` and friends decoded fine and then raised wherever the worker
first touched them, which killed its consumer thread.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.protocol import task as protocol
from engine.protocol.task import MalformedMessage, TaskMessage

ACCEPT = frozenset({"application/json"})
# One value of each JSON type, plus the edges numbers have (negative, fractional, huge, bool).
VALUES: list[Any] = [
    "",
    "abc",
    "2026-01-01T00:00:00",
    0,
    1,
    -1,
    2.5,
    -0.5,
    10**30,
    True,
    False,
    [],
    [1],
    ["abc", "def"],
    [1, 2, 3],
    [None, -1],
    {},
    {"a": 1},
    [[1]],
    {"x": [1]},
]
_, SAMPLE = protocol.build("t.task", [1], {"a": 2})
HEADERS = sorted(json.loads(SAMPLE)["headers"]) + ["retry_of", "redelivered"]
PROPERTIES = sorted(json.loads(SAMPLE)["properties"]) + ["expiration"]


def _with(where: str, key: str, value: Any) -> bytes:
    envelope = json.loads(SAMPLE)
    envelope[where][key] = value
    return json.dumps(envelope).encode()


def _read_everything(message: TaskMessage) -> None:
    """What the worker reads from a decoded message, with the types it relies on."""
    from engine.worker.job import Job

    assert isinstance(message.retries, int) and message.retries >= 0
    hard, soft = message.timelimit
    for limit in (hard, soft):
        assert limit is None or (isinstance(limit, (int, float)) and limit >= 0)
    info = message.delivery_info
    assert isinstance(info, dict) and (info["routing_key"] is None or isinstance(info["routing_key"], str))
    for value in (message.root_id, message.parent_id, message.group):
        assert value is None or isinstance(value, str)
    message.eta, message.expires, message.ignore_result  # noqa: B018 - each must not raise
    protocol.routing_of(message.raw)

    class _Task:
        def opt(self, *names: str) -> bool:
            return False

    Job(None, message, _Task(), False, hard, soft).request_fields("host")  # type: ignore[arg-type]


@pytest.mark.parametrize("where,key", [("headers", k) for k in HEADERS] + [("properties", k) for k in PROPERTIES])
def test_every_header_of_every_type_is_refused_or_readable(where: str, key: str) -> None:
    for value in VALUES:
        try:
            message = protocol.decode(_with(where, key, value), ACCEPT)
        except MalformedMessage as exc:
            if key == "body_encoding" and exc.reason == "bad_body":
                continue  # the body is then read as it stands, and it is base64, not JSON
            assert exc.reason in ("bad_header", "missing_header"), (key, value, exc)
            assert key in exc.detail or exc.reason == "missing_header", (key, value, exc.detail)
            continue
        _read_everything(message)


@pytest.mark.parametrize(
    "value,reason_part",
    [
        ("abc", "non-negative integer"),
        (-1, "non-negative integer"),
        (True, "non-negative integer"),
    ],
)
def test_retries_must_be_a_count(value: Any, reason_part: str) -> None:
    with pytest.raises(MalformedMessage, match=reason_part) as info:
        protocol.decode(_with("headers", "retries", value), ACCEPT)
    assert info.value.reason == "bad_header" and "'retries'" in info.value.detail


@pytest.mark.parametrize("value", [5, ["abc", "def"], [-1, None], [None, -0.5], [1, 2, 3], "5"])
def test_timelimit_must_be_two_non_negative_limits(value: Any) -> None:
    with pytest.raises(MalformedMessage, match="timelimit"):
        protocol.decode(_with("headers", "timelimit", value), ACCEPT)


@pytest.mark.parametrize("value", [[None, None], [], [10, 5], [0, None], [1.5, 0.5]])
def test_valid_timelimits_still_decode(value: Any) -> None:
    assert protocol.decode(_with("headers", "timelimit", value), ACCEPT).timelimit == tuple(
        (list(value) + [None, None])[:2]
    )


def test_properties_must_be_an_object() -> None:
    envelope = json.loads(SAMPLE)
    envelope["properties"] = "x"
    envelope["body"] = json.dumps([[1], {}, {}])  # not base64: properties no longer say it is
    with pytest.raises(MalformedMessage, match="properties"):
        protocol.decode(json.dumps(envelope).encode(), ACCEPT)


def test_delivery_info_text_is_refused() -> None:
    with pytest.raises(MalformedMessage, match="delivery_info"):
        protocol.decode(_with("properties", "delivery_info", "x"), ACCEPT)


EMPTY_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
SIG = {"task": "t.next", "args": [], "kwargs": {}, "options": {}, "subtask_type": None, "immutable": False}
GROUP = {"task": "celery.group", "subtask_type": "group", "kwargs": {"tasks": [SIG, SIG]}, "options": {}}


@pytest.mark.parametrize(
    "embed",
    [
        {"callbacks": "x"},
        {"callbacks": [1]},
        {"callbacks": [{"no": "task"}]},
        {"callbacks": [{"task": 5}]},
        {"callbacks": [{**SIG, "args": "abc"}]},
        {"callbacks": [{**SIG, "kwargs": []}]},
        {"callbacks": [{**SIG, "options": "x"}]},
        {"errbacks": {"a": 1}},
        {"chain": "x"},
        {"chain": [5]},
        {"chord": "x"},
        {"chord": [SIG]},
        {"callbacks": [{**GROUP, "kwargs": {"tasks": "nope"}}]},
        {"callbacks": [{**GROUP, "kwargs": {"tasks": [SIG, {"task": None}]}}]},
        {"callbacks": [{**SIG, "options": {"link": ["x"]}}]},
        {"chord": {"task": "celery.chord", "subtask_type": "chord", "kwargs": {"header": [SIG], "body": 3}}},
    ],
)
def test_garbage_in_the_embed_is_refused_before_the_task_runs(embed: dict[str, Any]) -> None:
    _, raw = protocol.build("t.task", [1], {}, embed={**EMPTY_EMBED, **embed})
    with pytest.raises(MalformedMessage) as info:
        protocol.decode(raw, ACCEPT)
    assert info.value.reason == "bad_body" and next(iter(embed)) in info.value.detail


def test_deep_canvas_nesting_is_refused_not_a_recursion_error() -> None:
    sig: dict[str, Any] = dict(SIG)
    for _ in range(200):
        sig = {**GROUP, "kwargs": {"tasks": [sig]}}
    _, raw = protocol.build("t.task", [1], {}, embed={**EMPTY_EMBED, "callbacks": [sig]})
    with pytest.raises(MalformedMessage, match="deep"):
        protocol.decode(raw, ACCEPT)


@pytest.mark.parametrize(
    "embed",
    [
        {"callbacks": [SIG], "errbacks": [SIG]},
        {"chain": [SIG, SIG]},
        {"callbacks": [GROUP]},
        {"chord": {**SIG, "options": {"link_error": [SIG], "link": SIG}}},
        {"chord": {"task": "celery.chord", "subtask_type": "chord", "kwargs": {"header": GROUP, "body": SIG}}},
    ],
)
def test_celery_shaped_workflows_decode(embed: dict[str, Any]) -> None:
    _, raw = protocol.build("t.task", [1], {}, embed={**EMPTY_EMBED, **embed})
    assert protocol.decode(raw, ACCEPT).embed == {**EMPTY_EMBED, **embed}
