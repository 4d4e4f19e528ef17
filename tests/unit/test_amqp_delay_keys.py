"""The delayed-delivery routing keys are Celery's (kombu's ``calculate_routing_key``), so a
message either side publishes is steered through the same levels."""

from __future__ import annotations

import datetime as dt

import pytest
from kombu.transport.native_delayed_delivery import calculate_routing_key

from engine.broker.amqp_delay import MAX_DELAY, delivery_pattern, due_in, routing_key, undelayed


@pytest.mark.parametrize("seconds", [1, 2, 3, 59, 3600, 86400 * 30, MAX_DELAY])
def test_routing_key_is_celerys(seconds: int) -> None:
    assert routing_key(seconds + 0.7, "celery") == calculate_routing_key(seconds, "celery")


def test_a_delay_beyond_the_levels_is_capped_not_misrouted() -> None:
    assert routing_key(MAX_DELAY * 4, "q") == routing_key(MAX_DELAY, "q")


def test_undelayed_strips_one_prefix_only_and_leaves_plain_names() -> None:
    key = routing_key(5, "a.b")
    assert undelayed(key) == "a.b" and undelayed("celery") == "celery" and undelayed("1.0.x") == "1.0.x"
    assert undelayed(routing_key(3, key)) == key


def test_delivery_pattern_has_one_word_per_level() -> None:
    assert delivery_pattern("q").split(".") == ["*"] * 28 + ["q"]


def test_due_in_reads_the_eta_header() -> None:
    eta = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    assert due_in({"eta": eta.isoformat()}, eta.timestamp() - 10) == pytest.approx(10)
    assert due_in({"eta": None}, 0) is None and due_in({"eta": "not a date"}, 0) is None


def test_celerys_delayed_queue_type_setting_reaches_the_broker() -> None:
    from engine.broker.amqp import AmqpBroker
    from engine.exceptions import ImproperlyConfigured
    from engine.redisconn import broker_target

    url = "amqp://guest:guest@127.0.0.1:1//"
    assert AmqpBroker(broker_target(url, {})).delayed_queue_type == "quorum"  # Celery's default
    conf = {"broker_native_delayed_delivery_queue_type": "classic"}
    assert AmqpBroker(broker_target(url, conf)).delayed_queue_type == "classic"
    with pytest.raises(ImproperlyConfigured, match="classic or quorum"):
        AmqpBroker(broker_target(url, {"broker_native_delayed_delivery_queue_type": "stream"}))
