"""Countdown and ETA on RabbitMQ through Celery 5.5's native delayed delivery topology.

Holding a future task unacked in the worker until it is due (Celery's way on classic queues)
runs into RabbitMQ's ``consumer_timeout`` (30 min by default), which closes the channel and
redelivers everything on it. Instead the delay is spent inside RabbitMQ, in the topology Celery
5.5 declares for quorum queues, so Celery workers and clients on the same node share it:

- 28 levels ``celery_delayed_27`` … ``celery_delayed_0``, each a topic exchange and a durable
  queue of the same name whose messages live ``2**level`` seconds (``x-message-ttl``) and are then
  dead-lettered to the next level's exchange (level 0's to ``celery_delayed_delivery``);
- the routing key is the delay in seconds as 28 binary digits, one word each, then the target's
  routing key: at level ``L`` a message whose digit ``L`` is 1 waits in that level's queue, one
  whose digit is 0 passes straight to the next level through an exchange-to-exchange binding.
  Dead-lettering keeps the routing key, so the digits steer the message all the way down;
- ``celery_delayed_delivery`` hands the message to its queue.

Celery binds a queue's own exchange to ``celery_delayed_delivery`` with ``#.<routing key>`` and so
cannot serve direct exchanges (Celery's default, and ours). We bind the queue itself to
``celery_delayed_delivery`` with ``*.``×28 ``<queue>`` instead, which works for any exchange type
and any queue type, classic included.

The level queues are quorum queues with ``x-dead-letter-strategy: at-least-once`` (Celery's
default ``broker_native_delayed_delivery_queue_type``): a message moves to the next level only
once that hop is confirmed, so a delayed task survives a RabbitMQ restart and is never dropped in
between. Classic level queues dead-letter at most once; when Celery declared them so first we use
them as they are (RabbitMQ refuses a second declaration that differs).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import amqp
import amqp.exceptions

from engine.protocol.task import parse_time

log = logging.getLogger("engine.broker")
LEVELS = 28
MAX_DELAY = 2**LEVELS - 1  # about 8.5 years; a longer ETA is re-routed when it comes out
FIRST = f"celery_delayed_{LEVELS - 1}"
DELIVERY = "celery_delayed_delivery"
MIN_DELAY = 1.0  # seconds: a shorter countdown is published straight to its queue
PREFIX = re.compile(rf"^(?:[01]\.){{{LEVELS}}}(?=.)")


def level_name(level: int) -> str:
    return f"celery_delayed_{level}"


def routing_key(seconds: float, queue: str) -> str:
    """The key that steers a message through the levels for ``seconds`` (whole seconds, rounded
    down as Celery does: it comes out up to a second early and the worker holds the rest)."""
    delay = min(max(int(seconds), 1), MAX_DELAY)
    return ".".join(format(delay, f"0{LEVELS}b")) + "." + queue


def undelayed(name: str) -> str:
    """``name`` without a delay prefix: a task that came out of the levels has a routing key of
    28 digits then its queue's, and a retry sends to ``delivery_info["routing_key"]``."""
    return PREFIX.sub("", name, count=1)


def delivery_pattern(queue: str) -> str:
    """What binds ``queue`` to ``celery_delayed_delivery``: any 28 digits, then exactly its name."""
    return "*." * LEVELS + queue


def due_in(headers: dict[str, Any], now: float) -> float | None:
    """Seconds until the message's ``eta`` header (protocol 2), None when it has none."""
    try:
        eta = parse_time(headers.get("eta"))
    except (TypeError, ValueError):
        return None
    return None if eta is None else eta.timestamp() - now


def declare_topology(connection: amqp.Connection, queue_type: str = "quorum") -> None:
    """Declare the 28 levels and ``celery_delayed_delivery`` unless they already exist.

    The delivery exchange is declared last (by us and by Celery), so finding it means the rest is
    there: its passive check spares 112 declarations per process and a refusal when Celery made
    the level queues with another ``x-queue-type``.
    """
    channel = connection.channel()
    try:
        channel.exchange_declare(DELIVERY, "topic", passive=True)
        return
    except amqp.exceptions.NotFound:
        pass  # the server closed that channel
    finally:
        _close(channel)
    channel = connection.channel()
    try:
        _declare_levels(channel, queue_type)
    finally:
        _close(channel)


def _declare_levels(channel: Any, queue_type: str) -> None:
    key = "1.#"
    for level in range(LEVELS - 1, -1, -1):
        name = level_name(level)
        arguments: dict[str, Any] = {
            "x-queue-type": queue_type,
            "x-overflow": "reject-publish",
            "x-message-ttl": 2**level * 1000,
            "x-dead-letter-exchange": level_name(level - 1) if level else DELIVERY,
        }
        if queue_type == "quorum":
            arguments["x-dead-letter-strategy"] = "at-least-once"
        channel.exchange_declare(name, "topic", durable=True, auto_delete=False)
        channel.queue_declare(name, durable=True, auto_delete=False, arguments=arguments)
        channel.queue_bind(name, name, key)
        key = "*." + key
    key = "0.#"
    for level in range(LEVELS - 1, 0, -1):
        channel.exchange_bind(level_name(level - 1), level_name(level), key)
        key = "*." + key
    channel.exchange_declare(DELIVERY, "topic", durable=True, auto_delete=False)
    channel.exchange_bind(DELIVERY, level_name(0), key)


def bind(connection: amqp.Connection, queues: list[str]) -> None:
    """Let delayed messages for ``queues`` out of ``celery_delayed_delivery`` into them."""
    channel = connection.channel()
    try:
        for queue in queues:
            channel.queue_bind(queue, DELIVERY, delivery_pattern(queue))
    finally:
        _close(channel)


def _close(channel: Any) -> None:
    try:
        channel.close()
    except Exception:  # already closed by the server
        log.debug("ignored while closing a channel", exc_info=True)
