"""Every captured Celery message in tests/vectors decodes with the engine's protocol code.

The vectors are real bytes written by Celery 5.7 (and 5.4) clients and workers (celery-wire.md §9).
Task messages go through ``engine.protocol.task.decode`` exactly as a worker receives them; result
documents through ``decode_exception`` and the ``meta`` shape; events and pidbox messages through
``engine.protocol.events`` / ``engine.protocol.control`` plus the documented field sets (§4, §5).
Every file is dispatched by its name prefix, so a new vector nobody handles fails here.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from engine import exceptions, states
from engine.broker.redis import binding_member
from engine.protocol import control, envelope, events
from engine.protocol import task as protocol
from engine.protocol.results import decode_exception, encode_exception, group_key, meta, task_key

VECTORS = Path(__file__).resolve().parents[1] / "vectors"  # copied from the protocol reference, celery-wire.md §9
FILES = sorted(VECTORS.glob("*.json")) if VECTORS.is_dir() else []
JSON_ONLY = frozenset({"application/json"})
SEP = "\x06\x16"

META_KEYS = {"status", "result", "traceback", "children", "date_done", "task_id"}
EXTENDED_KEYS = {"name", "args", "kwargs", "worker", "retries", "queue"}
EVENT_BASE = {"hostname", "utcoffset", "pid", "clock", "timestamp", "type"}
EVENT_FIELDS = {  # celery-wire.md §4: fields every event of the type carries besides EVENT_BASE
    "task-sent": {
        "uuid",
        "root_id",
        "parent_id",
        "name",
        "args",
        "kwargs",
        "retries",
        "eta",
        "expires",
        "queue",
        "exchange",
        "routing_key",
    },
    "task-received": {"uuid", "name", "args", "kwargs", "root_id", "parent_id", "retries", "eta", "expires"},
    "task-started": {"uuid"},
    "task-succeeded": {"uuid", "result", "runtime"},
    "task-failed": {"uuid", "exception"},
    "task-retried": {"uuid", "exception", "traceback"},
    "task-rejected": {"uuid", "requeue"},
    "task-revoked": {"uuid", "terminated", "signum", "expired"},
    "worker-online": {"freq", "active", "processed", "loadavg", "sw_ident", "sw_ver", "sw_sys"},
    "worker-heartbeat": {"freq", "sw_ident", "sw_ver", "sw_sys"},
    "worker-offline": {"freq", "active", "processed", "loadavg", "sw_ident", "sw_ver", "sw_sys"},
}
REQUEST_KEYS = {"method", "arguments", "destination", "pattern", "matcher", "ticket", "reply_to"}
EXCEPTION_CLASSES = {
    "ValueError": ValueError,
    "KeyError": KeyError,
    "NotRegistered": exceptions.NotRegistered,
    "Reject": exceptions.Reject,
    "TaskRevokedError": exceptions.TaskRevokedError,
    "ChordError": exceptions.ChordError,
}


def load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text())


def wire(env: dict[str, Any] | str) -> bytes:
    """The bytes as they sat in Redis (the captures store the envelope as parsed JSON)."""
    return env.encode() if isinstance(env, str) else json.dumps(env).encode()


def body_of(env: dict[str, Any]) -> Any:
    """celery-wire.md §1's decoding rule, independent of the engine."""
    body = env["body"]
    if env["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body)
    return json.loads(body)


# -- task messages --------------------------------------------------------------------------------


def check_task(env: dict[str, Any], decoded_body: list[Any]) -> protocol.TaskMessage:
    message = protocol.decode(wire(env), JSON_ONLY)
    headers, props = env["headers"], env["properties"]
    args, kwargs, embed = decoded_body
    assert body_of(env) == decoded_body
    assert (message.name, message.id) == (headers["task"], headers["id"])
    assert (message.args, message.kwargs, message.embed) == (args, kwargs, embed)
    assert message.root_id == headers["root_id"] and message.parent_id == headers["parent_id"]
    assert message.retries == headers["retries"] and message.group == headers["group"]
    assert message.timelimit == tuple(headers["timelimit"])
    assert message.ignore_result is bool(headers["ignore_result"])
    assert message.eta == protocol.parse_time(headers["eta"])
    assert message.expires == protocol.parse_time(headers["expires"])
    assert message.delivery_info["routing_key"] == props["delivery_info"]["routing_key"]
    assert message.delivery_info["priority"] == props["priority"]
    assert message.delivery_info["redelivered"] is bool(props["delivery_info"].get("redelivered"))
    assert message.raw == wire(env) and message.content_type == "application/json"
    for sig in (embed.get("callbacks") or []) + (embed.get("errbacks") or []) + (embed.get("chain") or []):
        assert {"task", "args", "kwargs", "options", "subtask_type", "immutable"} <= set(sig)
    return message


def check_task_file(doc: dict[str, Any]) -> None:
    if "cases" in doc:
        check_handmade(doc)
    elif "original" in doc:
        check_task(doc["original"], doc["original_decoded_body"])
        check_task(doc["republished"], doc["republished_decoded_body"])
    else:
        check_task(doc["raw"], doc["decoded_body"])


def handmade_envelope(case: dict[str, Any]) -> dict[str, Any]:
    task_id = str(uuid.uuid4())
    headers = case.get("headers", {"task": "tqproto.add", "id": "<uuid>"})
    if isinstance(headers, str):  # "all 15 v2 headers, lang=go"
        headers = json.loads(protocol.build("tqproto.add", [4, 4], task_id=task_id)[1])["headers"]
        headers["lang"] = "go"
    headers = {"task": "tqproto.add", "id": task_id, **{k: v for k, v in headers.items() if v != "<uuid>"}}
    if case["name"] == "v1-body-dict":
        headers = {}
    body = case.get("body_json", [[1, 1], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    if "embed" in case:
        body = [body[0], body[1], {**body[2], **case["embed"]}]
    text = json.dumps(body).replace('"<uuid>"', json.dumps(str(uuid.uuid4())))
    encoding = case.get("body_encoding", "base64")
    props: dict[str, Any] = {"delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0}
    if encoding == "base64":
        props["body_encoding"] = "base64"
        text = base64.b64encode(text.encode()).decode()
    return {
        "body": text,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": props,
    }


def check_handmade(doc: dict[str, Any]) -> None:
    """Hand-made messages a Celery 5.7 worker ran: we run the same ones, and refuse the poison one."""
    outcomes = {}
    for case in doc["cases"]:
        env = handmade_envelope(case)
        if "CRASH" in case["outcome"]:
            with pytest.raises(protocol.MalformedMessage) as refused:
                protocol.decode(wire(env), JSON_ONLY)
            outcomes[case["name"]] = refused.value.reason
            continue
        message = protocol.decode(wire(env), JSON_ONLY)
        outcomes[case["name"]] = (message.name, message.args, message.kwargs)
    assert outcomes["no-embed-2-elements"] == "bad_body"
    assert outcomes["minimal-plain-json-body"] == ("tqproto.add", [3, 3], {})
    assert outcomes["kwargs-only"] == ("tqproto.add", [], {"x": 5, "y": 5})
    assert outcomes["v1-body-dict"] == ("tqproto.add", [9, 9], {})
    assert outcomes["unknown-task"][0] == "tqproto.nope"
    for result in doc["results"].values():
        if result is not None:
            check_meta(result)


def test_task_headers_we_build_match_celerys() -> None:
    """Our client's message for add.delay(2, 3) has Celery's headers and properties, value for value."""
    captured = load("task-v2-basic.json")["raw"]
    head = captured["headers"]
    task_id, raw = protocol.build("tqproto.add", [2, 3], task_id=head["id"])
    ours = json.loads(raw)
    ignore = {"origin", "sent_at"}  # the publisher's identity; our extra (queue age)
    assert {k: v for k, v in ours["headers"].items() if k not in ignore} == {
        k: v for k, v in head.items() if k not in ignore
    }
    assert set(captured["properties"]) <= set(ours["properties"])
    assert ours["properties"]["delivery_info"] == captured["properties"]["delivery_info"]
    assert (ours["content-type"], ours["content-encoding"]) == (captured["content-type"], captured["content-encoding"])
    assert body_of(ours) == load("task-v2-basic.json")["decoded_body"]


def test_countdown_expires_priority_and_eta_vectors() -> None:
    message = check_task(
        load("task-v2-countdown-expires-priority.json")["raw"],
        load("task-v2-countdown-expires-priority.json")["decoded_body"],
    )
    assert (message.expires - message.eta).total_seconds() == 90  # countdown=30, expires=120
    assert message.delivery_info["priority"] == 5
    eta = check_task(load("task-v2-eta.json")["raw"], load("task-v2-eta.json")["decoded_body"]).eta
    assert eta.isoformat() == "2030-01-02T03:04:05+00:00"


def test_retry_republish_vector_is_the_same_task_one_retry_later() -> None:
    doc = load("task-v2-retry-republish.json")
    first = check_task(doc["original"], doc["original_decoded_body"])
    again = check_task(doc["republished"], doc["republished_decoded_body"])
    assert again.id == first.id and again.retries == first.retries + 1
    assert again.parent_id == first.id and again.root_id == first.root_id and again.eta is not None
    changed = protocol.republish_copy(first, retries=1)  # the helper our worker uses keeps the rest
    assert protocol.decode(changed, JSON_ONLY).retries == 1


def test_workflow_vectors_embed_celery_signatures() -> None:
    chain = check_task(load("task-v2-chain.json")["raw"], load("task-v2-chain.json")["decoded_body"])
    steps = chain.embed["chain"]
    assert steps[0]["options"]["task_id"] == load("task-v2-chain.json")["chain_result_id_returned_to_caller"]
    chord_doc = load("task-v2-chord-header.json")
    header = check_task(chord_doc["raw"], chord_doc["decoded_body"])
    assert header.group == chord_doc["chord_group_id"]
    assert header.embed["chord"]["options"]["task_id"] == chord_doc["chord_body_id"]
    errback = load("task-v2-errback-published.json")
    assert check_task(errback["raw"], errback["decoded_body"]).args == [errback["failing_task_id"]]


# -- result documents -----------------------------------------------------------------------------


def check_meta(doc: dict[str, Any]) -> None:
    assert META_KEYS <= set(doc) <= META_KEYS | EXTENDED_KEYS | {"parent_id", "group_id"}
    status = doc["status"]
    assert status in states.READY_STATES | states.UNREADY_STATES
    assert (doc["date_done"] is not None) == (status in states.READY_STATES)
    if status in states.EXCEPTION_STATES:
        data = doc["result"]
        exc = decode_exception(data)
        assert type(exc).__name__ == data["exc_type"] and list(exc.args) == data["exc_message"]
        if data["exc_type"] in EXCEPTION_CLASSES:
            assert isinstance(exc, EXCEPTION_CLASSES[data["exc_type"]])
        assert encode_exception(exc) == data  # and it writes back identically
    ours = meta(
        doc["task_id"],
        status,
        doc["result"],
        traceback=doc["traceback"],
        parent_id=doc.get("parent_id"),
        group_id=doc.get("group_id"),
        extended={k: doc[k] for k in EXTENDED_KEYS if k in doc} or None,
    )
    assert set(ours) == set(doc)
    assert {k: v for k, v in ours.items() if k not in ("date_done", "children")} == {
        k: v for k, v in doc.items() if k not in ("date_done", "children")
    }


def check_result_file(doc: dict[str, Any]) -> None:
    if "chord" in doc["kind"]:
        check_chord_keys(doc)
        return
    value = doc["value"]
    if "GroupResult" in doc["kind"]:
        for key, entry in value.items():
            saved = json.loads(entry["value"])
            group_id = saved["result"][0][0]
            assert key == group_key(group_id)
            assert all(member[0][1] is None for member in saved["result"][1])
    elif isinstance(value, list):
        for item in value:
            check_meta(item)
    elif "status" in value:
        check_meta(value)
        if "<" not in doc.get("redis", {}).get("key", "<"):
            assert doc["redis"]["key"] == task_key(value["task_id"])
    else:
        for item in value.values():
            check_meta(item)


def check_chord_keys(doc: dict[str, Any]) -> None:
    for moment in ("after_apply", "mid", "after_done", "failed_chord"):
        for key, entry in doc[moment].items():
            base, _, suffix = key.rpartition(".")
            assert base.startswith("celery-taskset-meta-") and suffix in {"s", "j", "d", "c", "t"}
            if suffix == "j":
                for member, score in entry["value"]:
                    one, task_id, state, result = json.loads(member)
                    assert one == 1 and state in states.READY_STATES and isinstance(score, float)
                    if state == states.FAILURE:
                        assert isinstance(decode_exception(result), ValueError)
    check_meta(doc["failed_chord_body_result"])


def test_result_vectors_decode_to_the_right_exceptions() -> None:
    revoked = load("result-revoked.json")["value"]
    assert {k: decode_exception(v["result"]).args[0] for k, v in revoked.items()} == {
        "expired": "expired",
        "revoked_by_control_command": "revoked",
        "revoked_when_worker_reached_it": "revoked",
        "terminated": "terminated",
    }
    assert all(isinstance(decode_exception(v["result"]), exceptions.TaskRevokedError) for v in revoked.values())
    assert isinstance(decode_exception(load("result-notregistered.json")["value"]["result"]), exceptions.NotRegistered)
    failure = load("result-failure.json")["value"]
    assert repr(decode_exception(failure["result"])) == "ValueError('boom')"
    retry = load("result-retry.json")["value"]
    assert [m["status"] for m in retry] == ["STARTED", "RETRY", "STARTED", "SUCCESS"]
    assert isinstance(decode_exception(retry[1]["result"]), KeyError)


def test_a_group_celery_saved_restores_here(redis_url: str, redis_client: Any) -> None:
    from engine import App
    from engine.workflows import GroupResult

    [(key, entry)] = load("result-group-saved.json")["value"].items()
    redis_client.set(key, entry["value"])
    group_id = key.removeprefix("celery-taskset-meta-")
    app = App("vectors", broker=redis_url, backend=redis_url)
    restored = GroupResult.restore(group_id, app)
    assert restored is not None
    assert [r.id for r in restored] == [m[0][0] for m in json.loads(entry["value"])["result"][1]]
    app.close()


# -- events ---------------------------------------------------------------------------------------


def without_paths(value: Any) -> Any:
    """Events minus tracebacks: some captures' decoded copies had file paths rewritten, not the raw body."""
    if isinstance(value, list):
        return [without_paths(v) for v in value]
    return {k: v for k, v in value.items() if k != "traceback"}


def check_event_shape(event: dict[str, Any]) -> None:
    kind = event["type"]
    assert kind in EVENT_FIELDS, kind
    assert EVENT_BASE | EVENT_FIELDS[kind] <= set(event), (kind, sorted(event))
    assert isinstance(event["hostname"], str) and isinstance(event["clock"], int)
    assert isinstance(event["utcoffset"], (int, float)) and isinstance(event["timestamp"], float)
    if kind in ("worker-online", "worker-offline") or "active" in event:
        assert len(event["loadavg"]) == 3


def check_event_file(doc: dict[str, Any]) -> None:
    if "raw" not in doc:  # lists of events as a receiver saw them
        for event in doc["events"]:
            check_event_shape(event)
        return
    env = doc["raw"]
    payload, headers = envelope.decode(wire(env))
    assert without_paths(payload) == without_paths(doc["decoded_body"])
    got = events.decode(wire(env))
    assert got == (payload if isinstance(payload, list) else [payload])
    for event in got:
        check_event_shape(event)
        assert headers["hostname"] == event["hostname"]
    routing_key = env["properties"]["delivery_info"]["routing_key"]
    assert routing_key == (events.MULTI_KEY if isinstance(payload, list) else events.routing_key(got[0]["type"]))
    assert env["properties"]["delivery_info"]["exchange"] == events.EXCHANGE
    if "channel" in doc.get("redis", {}):
        assert doc["redis"]["channel"] == events.channel(0, routing_key)
    if "event" in doc:
        assert without_paths(doc["event"]) in without_paths(got)


def test_the_events_we_build_carry_celerys_fields() -> None:
    for name in ("event-task-succeeded.json", "event-worker-heartbeat.json", "event-task-revoked.json"):
        captured = load(name)["event"]
        fields = {k: v for k, v in captured.items() if k not in EVENT_BASE}
        ours = events.make(captured["type"], "w1@vm", 7, **fields)
        assert set(ours) == set(captured)
    heartbeat = load("event-worker-heartbeat.json")["event"]
    assert set(events.worker_fields(2.0, 0, 4)) == set(heartbeat) - EVENT_BASE


# -- remote control (pidbox) ----------------------------------------------------------------------


def check_request(env: dict[str, Any], expected_body: dict[str, Any]) -> None:
    body, headers = envelope.decode(wire(env))
    assert body == expected_body and set(body) == REQUEST_KEYS
    assert set(headers) == {"clock", "expires"}
    assert env["properties"]["delivery_info"] == {"exchange": control.EXCHANGE, "routing_key": ""}
    fresh = copy.deepcopy(env)  # captured requests have long expired; the worker drops stale ones
    assert control.decode_request(wire(fresh)) is None
    fresh["headers"]["expires"] = 0  # kombu's "never expires": AsyncResult.revoke() sends it
    assert control.decode_request(wire(fresh)) is not None
    fresh["headers"]["expires"] = time.time() + 60
    request = control.decode_request(wire(fresh))
    assert request is not None
    assert (request.method, request.arguments, request.ticket, request.reply_to) == (
        body["method"],
        body["arguments"],
        body["ticket"],
        body["reply_to"],
    )


def check_reply(env: dict[str, Any], expected_body: dict[str, Any]) -> None:
    ticket, body = control.decode_reply(wire(env))
    assert ticket == env["headers"]["ticket"] and body == expected_body
    assert len(body) == 1  # one message per worker: {nodename: result}
    assert env["properties"]["delivery_info"]["exchange"] == control.REPLY_EXCHANGE


def check_pidbox_file(doc: dict[str, Any]) -> None:
    if "calls" in doc:
        for call in doc["calls"].values():
            body = call["request_body"]
            assert set(body) == REQUEST_KEYS and set(call["request_headers"]) == {"clock", "expires"}
            for reply in call["reply_bodies"]:
                assert len(reply) == 1 and isinstance(next(iter(reply)), str)
            _, raw = control.encode_request(body["method"], body["arguments"], reply_oid="oid")
            assert set(envelope.decode(raw)[0]) == REQUEST_KEYS  # ours sends the same fields
        return
    if "request" in doc:  # mingle hello
        check_request(doc["request"], doc["request_body"])
        check_reply(doc["reply"], doc["reply_body"])
        assert doc["reply_key"] == f"{doc['request_body']['reply_to']['routing_key']}.reply.celery.pidbox"
        return
    if "request" in doc["kind"]:
        check_request(doc["raw"], doc["decoded_body"])
        extra = doc.get("celery_app_control_request")
        if extra:
            check_request(extra["raw"], extra["decoded_body"])
    else:
        check_reply(doc["raw"], doc["decoded_body"])
        for reply in doc.get("celery_app_control_replies", []):
            check_reply(reply["raw"], reply["decoded_body"])


# -- kombu's Redis keys ---------------------------------------------------------------------------


def check_redis_file(doc: dict[str, Any]) -> None:
    if "unacked_hash_value" in doc:
        env, exchange, routing_key = doc["unacked_hash_value"]
        message = protocol.decode(wire(env), JSON_ONLY)
        assert routing_key == message.delivery_info["routing_key"] and exchange == ""
        assert [tag for tag, _ in doc["unacked_index"]] == [doc["unacked_hash_field"]]
        return
    keys = doc["keys"]
    assert keys["_kombu.binding.celery"] == [binding_member("celery")]
    assert keys["_kombu.binding_permanent.celery"] == [binding_member("celery")]
    for key, members in keys.items():
        if key.startswith("_kombu.binding.") and isinstance(members, list):
            assert all(len(member.split(SEP)) == 3 for member in members)


# -- every file -----------------------------------------------------------------------------------

CHECKS = {
    "task-": check_task_file,
    "result-": check_result_file,
    "event-": check_event_file,
    "pidbox-": check_pidbox_file,
    "redis-": check_redis_file,
}


def test_the_vectors_are_there() -> None:
    assert VECTORS.is_dir(), f"protocol vectors not found at {VECTORS}"
    assert len(FILES) >= 56  # celery-wire.md §9


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_vector_decodes(path: Path) -> None:
    doc = json.loads(path.read_text())
    check = next((fn for prefix, fn in CHECKS.items() if path.name.startswith(prefix)), None)
    assert check is not None, f"no decoder test for vector {path.name}"
    check(doc)


def test_the_eta_screen_passes_every_message_that_names_an_eta() -> None:
    """The work-sharing parent decodes only what this screen passes, to park future ETAs at once:
    a message it missed would still run at its ETA, but hold a child's place until then."""
    celerys = load("task-v2-eta.json")["raw"]
    assert protocol.may_name_eta(json.dumps(celerys).encode())  # kombu's spacing
    assert protocol.may_name_eta(json.dumps(celerys, separators=(",", ":")).encode())  # a compact client
    when = dt.datetime(2030, 1, 2, tzinfo=dt.timezone.utc)
    assert protocol.may_name_eta(protocol.build("t.add", (1, 2), eta=when)[1])
    assert not protocol.may_name_eta(json.dumps(load("task-v2-basic.json")["raw"]).encode())
    assert not protocol.may_name_eta(protocol.build("t.add", (1, 2))[1])
