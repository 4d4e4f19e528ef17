"""Acks on RabbitMQ go out as ``basic.ack multiple`` where that is safe: never past a delivery
the worker still holds (a task running late-acked, an ETA message held), so a worker that dies
has exactly its unfinished tasks redelivered, no more and no fewer."""

from __future__ import annotations

import time

import pytest

from engine.broker import connect
from engine.broker.amqp import AmqpBroker
from engine.protocol import task as protocol

pytestmark = pytest.mark.integration
ALL = frozenset({"application/json"})


def fetch_all(broker: AmqpBroker, n: int) -> list:
    got: list = []
    deadline = time.monotonic() + 20
    while len(got) < n and time.monotonic() < deadline:
        got += broker.fetch("me", ["celery"], n - len(got), 0.5)
    return got


def test_acks_with_gaps_leave_exactly_the_unacked_tasks_for_redelivery(amqp_url: str) -> None:
    first = connect(amqp_url)
    assert isinstance(first, AmqpBroker)
    built = [protocol.build("t", (i,), queue="celery") for i in range(8)]
    first.publish_many([("celery", raw, None) for _, raw in built])
    got = fetch_all(first, 8)
    assert len(got) == 8
    ids = [protocol.decode(d.raw, ALL).id for d in got]
    running = {ids[2], ids[5], ids[7]}  # still running (late ack) when the worker dies
    first.ack("me", [d.tag for d, i in zip(got, ids, strict=True) if i not in running])
    first.retire("me")  # the connection closes: RabbitMQ redelivers what was not acked
    first.close()
    second = connect(amqp_url)
    assert isinstance(second, AmqpBroker)
    try:
        again = fetch_all(second, 3)
        assert {protocol.decode(d.raw, ALL).id for d in again} == running
        second.ack("me", [d.tag for d in again])
        sentinel_id, sentinel = protocol.build("sentinel", queue="celery")
        second.publish("celery", sentinel)
        [last] = fetch_all(second, 1)  # nothing else came back before the sentinel
        assert protocol.decode(last.raw, ALL).id == sentinel_id
        second.ack("me", [last.tag])
    finally:
        second.close()
