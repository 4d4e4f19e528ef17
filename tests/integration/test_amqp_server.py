"""The private RabbitMQ node the AMQP tests run against."""

from __future__ import annotations

import amqp

from tests.integration.rabbitmq import RabbitMQ


def test_private_node_takes_and_keeps_a_durable_message(rabbitmq: RabbitMQ, amqp_url: str) -> None:
    conn = amqp.Connection(f"127.0.0.1:{rabbitmq.port}", userid="guest", password="guest")
    conn.connect()
    try:
        channel = conn.channel()
        channel.queue_declare("celery", durable=True, auto_delete=False)
        channel.basic_publish(amqp.Message(b"hello", delivery_mode=2), exchange="", routing_key="celery")
        got = None
        for _ in range(50):
            got = channel.basic_get("celery", no_ack=True)
            if got is not None:
                break
        assert got is not None and got.body == b"hello"
    finally:
        conn.close()
    print(f"rabbitmq started in {rabbitmq.started_in:.2f}s")
