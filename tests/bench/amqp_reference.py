"""What RabbitMQ itself allows: py-amqp publishing pre-built persistent messages with confirms.

The AMQP counterpart of the raw LPUSH references on Redis: no engine code, one connection, the
same messages the engines' drains are filled with. "One by one" waits for each confirm before
the next publish (what any ``delay()`` with confirms must do), persistent and, to show the share
of the broker's disk path in that round trip, transient; "pipelined" publishes a batch and
waits for its confirms once (what a bulk API can do).
"""

from __future__ import annotations

import time
from urllib.parse import unquote, urlsplit

import amqp
import amqp.spec

from engine.broker.amqp_wire import Outgoing


def connect(url: str) -> amqp.Connection:
    parts = urlsplit(url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    conn = amqp.Connection(
        f"{parts.hostname or '127.0.0.1'}:{parts.port or 5672}",
        userid=unquote(parts.username or "guest"),
        password=unquote(parts.password or "guest"),
        virtual_host=vhost,
        connect_timeout=5,
    )
    conn.connect()
    return conn


def message(raw: bytes) -> amqp.Message:
    m = Outgoing(raw)
    return amqp.Message(
        m.body,
        content_type=m.content_type,
        content_encoding=m.content_encoding,
        application_headers=m.headers,
        **m.properties,
    )


def rates(url: str, queue: str, raws: list[bytes], single: int) -> dict[str, float]:
    """``single`` publishes each waiting for its confirm, then ``raws`` pipelined with one wait;
    the queue is purged after each."""
    conn = connect(url)
    try:
        channel = conn.channel()
        one = message(raws[0])
        start = time.perf_counter()
        for _ in range(single):  # publish, then wait for its confirm
            channel.basic_publish_confirm(one, exchange="", routing_key=queue)
        out = {"raw_confirm_single_per_s": single / (time.perf_counter() - start)}
        # The same, but transient (delivery_mode 1): RabbitMQ confirms it without its disk path.
        # Not what a task may be sent as; it shows how much of the round trip is the broker's disk.
        transient = message(raws[0])
        transient.properties["delivery_mode"] = 1
        start = time.perf_counter()
        for _ in range(single):
            channel.basic_publish_confirm(transient, exchange="", routing_key=queue)
        out["raw_confirm_transient_single_per_s"] = single / (time.perf_counter() - start)
        channel.queue_purge(queue)
        batch = [message(raw) for raw in raws]
        acked = [0]

        def on_ack(tag: int, multiple: bool) -> None:
            acked[0] = max(acked[0], tag)  # RabbitMQ confirms one queue's messages in order

        piped = conn.channel()
        piped.events["basic_ack"].add(on_ack)
        piped.confirm_select()
        start = time.perf_counter()
        for m in batch:
            piped._basic_publish(m, exchange="", routing_key=queue)
        while acked[0] < len(batch):
            piped.wait([amqp.spec.Basic.Ack, amqp.spec.Basic.Nack], timeout=30)
        out["raw_confirm_pipelined_per_s"] = len(batch) / (time.perf_counter() - start)
        piped.queue_purge(queue)
        return out
    finally:
        conn.close()
