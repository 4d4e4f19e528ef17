"""A message from a template (engine.protocol.template) is ``protocol.build``'s message, byte for byte."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any

import pytest

from engine.protocol import task as protocol
from engine.protocol.template import Templates

ORIGIN = "gen1@host"
BASE: dict[str, Any] = {
    "task_id": None,
    "routing_key": None,
    "exchange": "",
    "eta": None,
    "expires": None,
    "retries": 0,
    "root_id": None,
    "parent_id": None,
    "group": None,
    "group_index": None,
    "timelimit": (None, None),
    "ignore_result": False,
    "headers": None,
    "embed": None,
    "serializer": "json",
    "shadow": None,
    "origin": ORIGIN,
    "reply_to": "",
    "properties": None,
}
CALLS: list[tuple[Any, Any]] = [
    ((), {}),
    ([], None),
    ((1, 'é"x%s\\', None), {"k": [1, 2.5], "%(i)s": "%"}),
    (("x" * 2000,), {}),  # argsrepr cut at 1024 characters
]
OPTIONS: list[dict[str, Any]] = [
    {},
    {"task_id": 'my"id\\%s', "root_id": "R\u00e9", "parent_id": 'P"'},
    {"parent_id": "P", "root_id": "R", "group": "G", "group_index": 3, "retries": 2},
    {"ignore_result": True, "timelimit": (10.0, 5), "shadow": "alias", "reply_to": "rq"},
    {"routing_key": "rk", "exchange": "ex", "serializer": "pickle"},
    # not templated: built whole, still the same message
    {"headers": {"h": 1}, "embed": {"callbacks": [{"task": "cb"}], "errbacks": None, "chain": None, "chord": None}},
    {"eta": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc), "properties": {"app_id": "billing"}},
]
TAG = re.compile(r'"delivery_tag": "[0-9a-f-]{36}"')
SENT_AT = re.compile(r'"sent_at": [0-9.e+]+')


def _same_but_random(ours: bytes, ref: bytes) -> None:
    """Equal once the delivery tag and ``sent_at`` (random and clock, per message) are set aside."""
    text, expected = ours.decode(), ref.decode()
    tag = TAG.search(text)
    assert tag is not None and uuid.UUID(tag.group()[-37:-1]).version == 4
    for pattern in (TAG, SENT_AT):
        text, expected = pattern.sub("<x>", text), pattern.sub("<x>", expected)
    assert text == expected


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize(("queue", "priority"), [("celery", None), ("q", 6)])
def test_template_makes_what_build_makes(options: dict[str, Any], queue: str, priority: int | None) -> None:
    templates = Templates()
    for _ in range(2):  # the first builds the template, the second fills it from the cache
        for args, kwargs in CALLS:
            opts = {**BASE, **options}
            task_id, raw = templates.build("t.name", args, kwargs, queue, priority, opts)
            assert task_id == (options.get("task_id") or task_id)
            _, ref = protocol.build(
                "t.name", args, kwargs, queue=queue, priority=priority, **{**opts, "task_id": task_id}
            )
            _same_but_random(raw, ref)
            message = protocol.decode(raw, frozenset({"application/json", "application/x-python-serialize"}))
            assert (message.id, message.args, message.kwargs) == (task_id, list(args), dict(kwargs or {}))
            assert message.root_id == (options.get("root_id") or task_id)


@pytest.mark.parametrize("now", [1765000000.1, 1765000000.0, 1765000000.1239, 1765000000.9996, 1765000012.5005])
def test_sent_at_is_written_as_json_writes_it_so_a_re_encoded_message_keeps_its_bytes(
    monkeypatch: pytest.MonkeyPatch, now: float
) -> None:
    """A publish hook (``before_task_publish``) decodes a message and encodes it again: a
    ``sent_at`` written with trailing zeros (``.100``) came back as ``.1``, other bytes. Whole
    seconds, trailing zeros and rounding up into the next second are written as JSON would."""
    from engine.protocol import template as module
    from engine.serialization import json_dumps

    monkeypatch.setattr(module, "time", type("Clock", (), {"time": staticmethod(lambda: now)}))
    templates = Templates()
    raws = [templates.build("t.name", (1,), {}, "celery", None, dict(BASE))[1] for _ in range(2)]
    assert json.loads(raws[1])["headers"]["sent_at"] == round(now, 3)  # a template's fill, as build's
    raws += [raw for _, raw in module.Template("t.name", queue="celery").fill_many([((1,), None)])]
    for raw in raws:
        assert abs(json.loads(raw)["headers"]["sent_at"] - now) < 0.001  # (a bulk send's is cut to the ms)
        assert json_dumps(json.loads(raw)).encode() == raw


def test_each_message_has_its_own_ids() -> None:
    templates = Templates()
    built = [templates.build("t.name", (), {}, "celery", None, dict(BASE)) for _ in range(500)]
    ids = {task_id for task_id, _ in built}
    tags = {json.loads(raw)["properties"]["delivery_tag"] for _, raw in built}
    assert len(ids) == len(tags) == 500 and not ids & tags
    for value in list(ids)[:50]:
        assert str(uuid.UUID(value)) == value and uuid.UUID(value).version == 4


def test_templates_are_per_task_and_options_and_the_cache_stays_bounded() -> None:
    templates = Templates(size=4)
    for n in range(10):
        _, raw = templates.build(f"t.{n}", (), {}, "celery", n % 3, {**BASE, "retries": n})
        headers = json.loads(raw)["headers"]
        assert (headers["task"], headers["retries"], json.loads(raw)["properties"]["priority"]) == (f"t.{n}", n, n % 3)
    assert len(templates._cache) <= 4


def test_unknown_or_unhashable_options_are_built_whole() -> None:
    templates = Templates()
    _, raw = templates.build("t.name", (), {}, "celery", None, {**BASE, "timelimit": [1, 2]})
    assert json.loads(raw)["headers"]["timelimit"] == [1, 2]
    assert not templates._cache


def test_a_groups_members_share_one_template() -> None:
    """Each member's group and index are its own: were they part of the template's key, every
    member would make a template for one message (a group of N sent at half its rate)."""
    templates = Templates()
    for group_id in (str(uuid.uuid4()), 'g"2\\%s'):
        for index in (0, 1, 17):
            opts = {**BASE, "group": group_id, "group_index": index, "parent_id": "P"}
            task_id, raw = templates.build("t.member", (index,), {}, "celery", None, opts)
            _, ref = protocol.build("t.member", (index,), {}, queue="celery", **{**opts, "task_id": task_id})
            _same_but_random(raw, ref)
            headers = json.loads(raw)["headers"]
            assert (headers["group"], headers["group_index"]) == (group_id, index)
    _, raw = templates.build("t.member", (), {}, "celery", None, dict(BASE))  # no group: null, as build
    assert json.loads(raw)["headers"]["group"] is None and json.loads(raw)["headers"]["group_index"] is None
    assert len(templates._cache) == 1


# -- App's send plans: a setting or task attribute changed after a send counts at the next one ----


@pytest.fixture
def app(redis_url: str, redis_client: Any) -> Any:
    from engine import App

    application = App("unit", broker=redis_url, backend=redis_url, task_send_sent_event=False)
    yield application
    application.close()


def _sent(client: Any, key: str) -> list[protocol.TaskMessage]:
    raws = client.lrange(key, 0, -1)
    client.delete(key)
    return [protocol.decode(raw, frozenset({"application/json"})) for raw in reversed(raws)]


def test_a_change_after_a_send_counts_at_the_next_send(app: Any, redis_client: Any) -> None:
    task = app.task(name="unit.planned", ignore_result=True)(lambda *a, **k: None)
    ids = [task.delay(1, x="y").id for _ in range(3)]
    first = _sent(redis_client, "celery")
    assert [m.id for m in first] == ids and len(set(ids)) == 3
    assert all((m.args, m.kwargs, m.ignore_result) == ([1], {"x": "y"}, True) for m in first)

    app.conf.task_default_queue = "elsewhere"
    task.ignore_result = False
    task.time_limit = 30
    result = task.delay()
    (moved,) = _sent(redis_client, "elsewhere")
    assert (moved.id, moved.ignore_result, moved.timelimit) == (result.id, False, (30, None))

    app.conf.task_routes = {"unit.planned": {"queue": "routed"}}
    task.apply_async(priority=3)
    (routed,) = _sent(redis_client, protocol.priority_key("routed", 3))
    assert routed.delivery_info["priority"] == 3

    app.conf.task_routes = None
    task.apply_async(queue="own", serializer="json", shadow="alias")
    (own,) = _sent(redis_client, "own")
    assert own.headers["shadow"] == "alias"


class _Config:
    task_default_queue = "from_object"


@pytest.mark.parametrize(
    "change",
    [
        lambda conf: setattr(conf, "task_default_queue", "attr"),
        lambda conf: conf.__setitem__("task_default_queue", "item"),
        lambda conf: conf.update(task_default_queue="update"),
        lambda conf: conf.from_object(_Config),
    ],
    ids=["attribute", "item", "update", "from_object"],
)
def test_every_way_of_changing_a_setting_counts_at_the_next_send(app: Any, redis_client: Any, change: Any) -> None:
    """Plans are kept while the settings' version stands: each way of setting one must move it."""
    task = app.task(name="unit.versioned", ignore_result=True)(lambda *a, **k: None)
    task.delay()
    assert len(_sent(redis_client, "celery")) == 1
    change(app.conf)
    queue = app.conf.task_default_queue
    task.delay()
    assert len(_sent(redis_client, queue)) == 1


def test_a_forked_child_sends_on_its_own_connection_and_names_itself(app: Any, redis_client: Any) -> None:
    """The child's pid is learnt at the fork (engine.forks), not by asking on every send: the child's
    messages must still carry its own ``origin`` and go out on a connection of its own."""
    import os

    task = app.task(name="unit.forked", ignore_result=True)(lambda *a, **k: None)
    task.delay()
    parent_broker = app.broker
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit status
        try:
            task.delay()
            os._exit(0 if app.broker is not parent_broker else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parent, forked = _sent(redis_client, "celery")
    assert parent.headers["origin"].startswith(f"gen{os.getpid()}@")
    assert forked.headers["origin"].startswith(f"gen{child}@")
    task.delay()
    (again,) = _sent(redis_client, "celery")
    assert again.headers["origin"] == parent.headers["origin"] and app.broker is parent_broker
