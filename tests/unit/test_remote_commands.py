"""Custom remote-control commands are per app; stats' broker block never shows a password; Retry
keeps Celery's name in tracebacks yet pickles without celery."""

from __future__ import annotations

import pickle
import sys
import traceback
import types

import pytest

from engine import App
from engine.exceptions import Retry
from engine.worker.control import collect, control_command, inspect_command
from engine.worker.stats import broker_info, queue_as_dict


def _module(name: str, app: App, **values: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(app=app, **values)
    sys.modules[name] = module
    return module


def test_marked_commands_belong_to_the_app_whose_module_holds_them() -> None:
    first, second = App("first"), App("second")

    @inspect_command(args=[("n", int)], signature="[N=1]")
    def how_many(state: object, n: int = 1) -> int:
        """Count to N."""
        return n

    @first.control_command(name="reset_all", alias="reset")
    def reset(state: object) -> dict[str, str]:
        return {"ok": "reset"}

    try:
        _module("tests_unit_cmds_first", first, how_many=how_many)
        _module("tests_unit_cmds_second", second)
        found = collect(first)
        assert sorted(found) == ["how_many", "reset", "reset_all"]
        assert found["how_many"].type == "inspect" and found["how_many"].args == (("n", int),)
        assert found["how_many"].help == "Count to N." and found["how_many"].signature == "[N=1]"
        assert found["reset"] is found["reset_all"] and found["reset"].type == "control"
        assert collect(second) == {}  # no process-wide registry: the other app sees none of them
    finally:
        sys.modules.pop("tests_unit_cmds_first", None)
        sys.modules.pop("tests_unit_cmds_second", None)


def test_a_decorated_function_stays_callable() -> None:
    @control_command()
    def ping_back(state: object, word: str = "x") -> str:
        return word

    assert ping_back(None, word="y") == "y"


def test_broker_info_has_kombus_fields_and_no_password() -> None:
    info = broker_info("redis://user:s3cret@cache.internal:6380/2")
    assert (info["hostname"], info["userid"], info["port"]) == ("cache.internal", "user", 6380)
    assert info["virtual_host"] == "2" and info["transport"] == "redis"
    assert "password" not in info and "s3cret" not in repr(info)
    socket_info = broker_info("redis+socket://:s3cret@/run/redis.sock")
    assert "s3cret" not in repr(socket_info) and socket_info["uri_prefix"] == "redis"
    assert broker_info("rediss://h/0?ssl_cert_reqs=required")["ssl"] == {"ssl_cert_reqs": "required"}


@pytest.mark.parametrize(
    "url", ["amqp://user:s3cret@rabbit:5672/vh", "amqps://user:s3cret@rabbit//", "sqs://KEYID:s3cret@"]
)
def test_broker_info_on_rabbitmq_and_sqs_is_kombus_own(url: str) -> None:
    """``inspect stats`` (and Flower's worker page) said ``transport: redis``, port 6379, for a
    worker on RabbitMQ: the info was built for Redis URLs only."""
    import kombu

    expected = kombu.Connection(url).info()
    expected.pop("password")
    info = broker_info(url)
    assert info == expected and "s3cret" not in repr(info)
    assert info["transport"] == url.split(":", 1)[0]


def test_broker_info_masks_secrets_in_transport_options() -> None:
    """A Sentinel's password and SQS's queue keys came back in clear from ``inspect stats``."""
    sentinel = {"master_name": "m", "sentinel_kwargs": {"password": "sentinel-pw"}}
    info = broker_info("sentinel://h1:26379", sentinel)
    assert info["transport_options"] == {"master_name": "m", "sentinel_kwargs": {"password": "********"}}
    queues = {"predefined_queues": {"celery": {"url": "https://q", "secret_access_key": "sqs-secret"}}}
    assert "sqs-secret" not in repr(broker_info("sqs://", queues))


def test_queue_as_dict_is_kombus_shape() -> None:
    queue = queue_as_dict("high")
    assert queue["no_ack"] is False and queue["routing_key"] == "high" and queue["bindings"] == []
    assert queue["exchange"]["name"] == "high" and queue["exchange"]["type"] == "direct"


def test_retry_reads_as_celerys_in_a_traceback_and_pickles_as_ours() -> None:
    try:
        raise Retry(exc=ValueError("x"), when=5)
    except Retry:
        last = traceback.format_exc().strip().splitlines()[-1]
    assert last == "celery.exceptions.Retry: Retry in 5s: ValueError('x')"
    back = pickle.loads(pickle.dumps(Retry("why", ValueError("y"), 3)))
    assert type(back) is Retry and (back.message, repr(back.exc), back.when) == ("why", "ValueError('y')", 3)
