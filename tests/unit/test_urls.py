"""Broker URLs: what each scheme becomes, and the one-line errors users see, never with a password."""

from __future__ import annotations

import pytest

from engine.broker.connect import connect
from engine.config import mask_url, url_host
from engine.exceptions import ImproperlyConfigured
from engine.redisconn import client_from_url


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:s3cret@db.example:6379/0", "redis://:****@db.example:6379/0"),
        ("rediss://alice:s3cret@db.example:6380/2", "rediss://alice:****@db.example:6380/2"),
        ("amqp://guest:s3cret@mq//", "amqp://guest:****@mq//"),
        ("redis://db.example:6379/0", "redis://db.example:6379/0"),
        ("redis+socket:///tmp/x/redis.sock", "redis+socket:///tmp/x/redis.sock"),
        # an unquoted '/', '?' or '#' in the password ends urlsplit's netloc early: no tail shows
        ("redis://alice:ab/s3cret@db.example:6379/0", "redis://alice:****@db.example:6379/0"),
        ("amqp://guest:s3/cr?et#x@mq//", "amqp://guest:****@mq//"),
        ("redis://alice:pw@db.example:6379/0?tag=a@b", "redis://alice:****@db.example:6379/0?tag=a@b"),
    ],
)
def test_passwords_are_masked_and_the_rest_is_kept(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_host_is_named_without_credentials() -> None:
    assert url_host("redis://:s3cret@db.example:6379/0") == "db.example:6379"


def test_amqp_is_refused_by_name_where_redis_is_needed_with_the_password_masked() -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        client_from_url("amqp://guest:s3cret@mq.example:5672//")
    text = str(info.value)
    assert "AMQP brokers are not supported here yet" in text and "s3cret" not in text and "\n" not in text


@pytest.mark.parametrize("scheme", ["amqp", "amqps", "pyamqp"])
def test_amqp_urls_get_the_amqp_broker_without_connecting(scheme: str) -> None:
    from engine.broker.amqp import AmqpBroker

    broker = connect(f"{scheme}://guest:s3cret@mq.example:5672//")
    assert isinstance(broker, AmqpBroker)
    broker.close()


@pytest.mark.parametrize("make", [connect, client_from_url], ids=["broker", "client"])
def test_an_unknown_scheme_names_the_schemes_that_work(make) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"unsupported broker URL scheme 'http'.*redis://") as caught:
        make("http://user:s3cret@example.com/")
    assert "s3cret" not in str(caught.value)


def test_an_unknown_broker_scheme_names_rabbitmq_and_sqs_too() -> None:
    """``App(broker=...)`` with a scheme no transport takes: AMQP and SQS work as brokers, so the
    error names them beside Redis's (it named Redis's alone)."""
    with pytest.raises(ImproperlyConfigured, match=r"'nonsense'.*redis://.*amqp://.*sqs://"):
        connect("nonsense://x")


def test_socket_urls_become_unix_socket_clients_with_their_db() -> None:
    client = client_from_url("redis+socket:///tmp/some/redis.sock?virtual_host=3")
    settings = client.connection_pool.settings
    assert settings.path == "/tmp/some/redis.sock" and settings.db == 3
