"""``AmqpBroker`` against the session's private RabbitMQ: what a worker and a client rely on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from engine.broker import connect
from engine.broker.amqp import AmqpBroker
from engine.broker.base import DeadLetter
from engine.exceptions import BrokerUnavailable, ImproperlyConfigured
from engine.protocol import task as protocol
from engine.redisconn import with_options

pytestmark = pytest.mark.integration
ALL = frozenset({"application/json"})


@pytest.fixture
def broker(amqp_url: str) -> Iterator[AmqpBroker]:
    made = connect(amqp_url)
    assert isinstance(made, AmqpBroker)
    yield made
    made.close()


def fetch_all(broker: AmqpBroker, n: int, queues: tuple[str, ...] = ("celery",)) -> list:
    got: list = []
    deadline = time.monotonic() + 20
    while len(got) < n and time.monotonic() < deadline:
        got += broker.fetch("me", list(queues), n - len(got), 0.5)
    return got


def test_published_task_is_fetched_as_the_envelope_the_worker_decodes(broker: AmqpBroker) -> None:
    task_id, raw = protocol.build("shop.add", (2, 3), {"k": [1, None]}, queue="celery")
    broker.publish("celery", raw)
    [delivery] = fetch_all(broker, 1)
    message = protocol.decode(delivery.raw, ALL)
    assert (message.id, message.name, message.args, message.kwargs) == (task_id, "shop.add", [2, 3], {"k": [1, None]})
    assert message.delivery_info["routing_key"] == "celery" and not message.delivery_info["redelivered"]
    assert delivery.queue == "celery"
    broker.ack("me", [delivery.tag])
    assert broker.queue_depth("celery") == 0


def test_requeued_and_unacked_messages_come_back_redelivered(amqp_url: str, broker: AmqpBroker) -> None:
    broker.publish("celery", protocol.build("t", queue="celery")[1])
    [first] = fetch_all(broker, 1)
    assert broker.requeue("me", [first.tag]) == 1
    [again] = fetch_all(broker, 1)
    assert protocol.decode(again.raw, ALL).delivery_info["redelivered"]
    broker.retire("me")  # closing the channel with it unacked: RabbitMQ keeps it
    other = connect(amqp_url)
    try:
        [third] = fetch_all(other, 1)  # type: ignore[arg-type]
        assert protocol.decode(third.raw, ALL).id == protocol.decode(first.raw, ALL).id
        other.ack("me", [third.tag])
    finally:
        other.close()


def test_priorities_with_task_queue_max_priority(amqp_url: str) -> None:
    broker = connect(with_options(amqp_url, queue_max_priority=10))
    try:
        for n, priority in enumerate((1, 9, 5)):
            broker.publish("celery", protocol.build("t", (n,), queue="celery", priority=priority)[1], priority)
        got = fetch_all(broker, 3)  # type: ignore[arg-type]
        assert [protocol.decode(d.raw, ALL).args for d in got] == [[1], [2], [0]]  # highest first, as RabbitMQ
        broker.ack("me", [d.tag for d in got])
    finally:
        broker.close()


def test_eta_message_is_held_until_due(broker: AmqpBroker) -> None:
    broker.publish("celery", protocol.build("t", queue="celery")[1])
    [held] = fetch_all(broker, 1)
    broker.defer("me", held.tag, 100.0)
    assert broker.promote_due(50.0) == (0, 100.0)
    assert broker.promote_due(100.0) == (1, None)
    [due] = broker.fetch("me", ["celery"], 5, 0)
    assert due.tag == held.tag and broker.claim("me", due.tag, take=True)
    assert not broker.claim("me", due.tag, take=True)  # acked once only


def test_dead_letters_are_kept_listed_requeued_and_deleted(broker: AmqpBroker) -> None:
    for n in range(2):
        broker.publish("celery", protocol.build("t", (n,), queue="celery")[1])
    deliveries = fetch_all(broker, 2)
    for n, delivery in enumerate(deliveries):
        letter = DeadLetter(f"L{n}", "celery", "bad_body", "no", 1.5 + n, f"id{n}", "t", "w1", delivery.raw)
        broker.dead_letter("me", delivery.tag, letter)
    assert broker.queue_depth("celery") == 0
    letters = broker.dead_letters()
    assert [(x.id, x.reason, x.task_id, x.queue) for x in letters] == [
        ("L1", "bad_body", "id1", "celery"),
        ("L0", "bad_body", "id0", "celery"),
    ]
    found = broker.dead_letter_get("L0")
    assert found is not None and protocol.decode(found.raw, ALL).args == [0]
    assert broker.dead_letter_requeue("L0") and not broker.dead_letter_requeue("L0")
    [back] = fetch_all(broker, 1)
    assert protocol.decode(back.raw, ALL).args == [0]
    assert broker.dead_letter_delete("L1")
    assert broker.dead_letters() == [] and broker.dead_letter_count() == 0


def test_purge_and_depth(broker: AmqpBroker) -> None:
    broker.declare(["celery"])
    for _ in range(3):
        broker.publish("celery", protocol.build("t", queue="celery")[1])
    assert broker.queue_depth("celery") == 3
    assert broker.purge("celery") == 3
    assert broker.queue_depth("nowhere.such") == 0


def test_unreachable_broker_is_one_line(rabbitmq: object) -> None:
    from tests.integration.servers import free_port

    broker = connect(f"amqp://guest:secret@127.0.0.1:{free_port()}//")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as info:
        broker.publish("celery", protocol.build("t")[1])
    assert time.monotonic() - started < 30
    assert "\n" not in str(info.value) and "secret" not in str(info.value)
    assert str(info.value).startswith("cannot reach broker at 127.0.0.1:")  # the words a Redis broker gives
    broker.close()


def test_a_thread_per_publish_reuses_connections(broker: AmqpBroker) -> None:
    """A web server's thread per request must not leave an AMQP connection per request open."""
    import threading

    for n in range(30):
        thread = threading.Thread(target=broker.publish, args=("celery", protocol.build("t", (n,), queue="celery")[1]))
        thread.start()
        thread.join()
    assert len(broker._idle) == 1
    got = fetch_all(broker, 30)
    assert sorted(protocol.decode(d.raw, ALL).args[0] for d in got) == list(range(30))


def test_a_channel_rabbitmq_closes_is_a_reconnect_and_its_messages_come_back(broker: AmqpBroker) -> None:
    """As when RabbitMQ's consumer_timeout closes the channel of a long-held message."""
    broker.publish("celery", protocol.build("t", queue="celery")[1])
    [first] = fetch_all(broker, 1)
    assert broker._conn is not None
    broker._conn.default_channel.basic_ack(999_999)  # a tag RabbitMQ never gave: it closes the channel
    with pytest.raises(BrokerUnavailable):
        for _ in range(100):
            broker.fetch("me", ["celery"], 1, 0.1)
    [again] = fetch_all(broker, 1)
    assert protocol.decode(again.raw, ALL).delivery_info["redelivered"]
    assert not broker.claim("me", first.tag, take=True)  # the old delivery is void, the new one is ours
    assert broker.claim("me", again.tag, take=True)


def test_publish_many_confirms_a_batch_across_queues(broker: AmqpBroker) -> None:
    items = [(("celery", "other")[n % 2], protocol.build("t", (n,), queue="x")[1], None) for n in range(400)]
    broker.publish_many(items)
    assert broker.queue_depth("celery") == 200 and broker.queue_depth("other") == 200  # confirmed: all there
    got = fetch_all(broker, 400, ("celery", "other"))
    assert sorted(protocol.decode(d.raw, ALL).args[0] for d in got) == list(range(400))
    broker.publish_many([])


def test_batched_publishes_go_out_together_at_the_end_confirmed(broker: AmqpBroker) -> None:
    """A group's members: held while the block runs, all confirmed once it returns; a block left
    by an exception sends none of them."""
    with broker.batched():
        for n in range(3):
            broker.publish("celery", protocol.build("t", (n,), queue="celery")[1])
        with broker.batched():  # a nested group joins the outer batch
            broker.publish("other", protocol.build("t", (3,), queue="other")[1], priority=1)
        assert broker.queue_depth("celery") == 0 and broker.queue_depth("other") == 0
    assert broker.queue_depth("celery") == 3 and broker.queue_depth("other") == 1
    with pytest.raises(ValueError), broker.batched():
        broker.publish("celery", protocol.build("t", (9,), queue="celery")[1])
        raise ValueError("the group failed to build")
    got = fetch_all(broker, 4, ("celery", "other"))
    assert sorted(protocol.decode(d.raw, ALL).args[0] for d in got) == [0, 1, 2, 3]
    broker.publish("celery", protocol.build("t", (10,), queue="celery")[1])  # after the block: at once
    [last] = fetch_all(broker, 1)
    assert protocol.decode(last.raw, ALL).args[0] == 10


def test_amqps_with_celerys_broker_use_ssl(rabbitmq: Any, amqp_url: str) -> None:
    tls = rabbitmq.tls
    url = f"amqps://guest:guest@127.0.0.1:{rabbitmq.tls_port}//"
    checked = connect(with_options(url, use_ssl={"ssl_ca_certs": tls["ca"], "ssl_cert_reqs": "required"}))
    try:
        task_id, raw = protocol.build("t", queue="celery")
        checked.publish("celery", raw)
        [delivery] = fetch_all(checked, 1)  # type: ignore[arg-type]
        assert protocol.decode(delivery.raw, ALL).id == task_id
        checked.ack("me", [delivery.tag])
    finally:
        checked.close()
    unknown_ca = connect(url)  # the system's CAs do not know the test CA: refused in one line
    try:
        with pytest.raises(BrokerUnavailable) as info:
            unknown_ca.publish("celery", raw)
        assert "\n" not in str(info.value) and "certificate" in str(info.value).lower()
    finally:
        unknown_ca.close()


def test_a_delivery_names_its_queue_not_the_routing_key_it_came_by(rabbitmq: Any, broker: AmqpBroker) -> None:
    """A Celery client routing through its own exchange and key: dead letters and requeues must
    still name the queue."""
    import amqp

    broker.declare(["other"])
    conn = amqp.Connection(f"127.0.0.1:{rabbitmq.port}", userid="guest", password="guest")
    conn.connect()
    try:
        channel = conn.channel()
        channel.exchange_declare("tqtest.routed", "direct", durable=False, auto_delete=False)
        channel.queue_bind("other", "tqtest.routed", "rk")
        channel.basic_publish(amqp.Message(protocol.build("t")[1]), exchange="tqtest.routed", routing_key="rk")
        [delivery] = fetch_all(broker, 1, ("other",))
        assert delivery.queue == "other"
        broker.ack("me", [delivery.tag])
        channel.exchange_delete("tqtest.routed")
    finally:
        conn.close()


def test_quorum_queues_with_task_default_queue_type(amqp_url: str) -> None:
    broker = connect(with_options(amqp_url, queue_type="quorum"))
    try:
        broker.publish("low", protocol.build("t", queue="low")[1])
        [first] = fetch_all(broker, 1, ("low",))  # type: ignore[arg-type]
        assert broker.requeue("me", [first.tag]) == 1
        [again] = fetch_all(broker, 1, ("low",))  # type: ignore[arg-type]
        assert protocol.decode(again.raw, ALL).delivery_info["redelivered"]
        broker.ack("me", [again.tag])
    finally:
        broker.close()
    plain = connect(amqp_url)  # a classic declaration of the same queue is refused, in one line
    try:
        with pytest.raises(ImproperlyConfigured, match="x-queue-type"):
            plain.publish("low", protocol.build("t", queue="low")[1])
    finally:
        plain.close()
