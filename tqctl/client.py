"""The CLI's door into the engine: resolve which cluster to talk to and open connections.

Commands import this, not engine internals, so the console and the scripted commands agree
on what ``--broker`` (or its absence) means.
"""

from __future__ import annotations

import os

from engine.broker import Broker, connect
from engine.config import mask_url

DEFAULT_STATE_DIR = ".tqctl"


def resolve_state_dir(option: str | None = None) -> str:
    """``--state-dir``, else ``TQCTL_STATE_DIR``, else ``.tqctl`` (the bundled broker, logs)."""
    return option or os.environ.get("TQCTL_STATE_DIR") or DEFAULT_STATE_DIR


def resolve_broker_url(option: str | None, state_dir: str | None = None) -> str:
    """``--broker``, else ``TQCTL_BROKER``, else the bundled server (started if needed)."""
    url = option or os.environ.get("TQCTL_BROKER")
    if url:
        return url
    from engine import bundled

    return bundled.ensure_running(resolve_state_dir(state_dir))


def open_broker(option: str | None, call_timeout: float | None = None) -> Broker:
    broker = connect(bounded_calls(resolve_broker_url(option), call_timeout))
    broker.ping()
    return broker


def bounded_calls(url: str, seconds: float | None) -> str:
    """``url`` whose every SQS call gives up after ``seconds`` (boto's own: 30 s, retried), and
    whose RabbitMQ connecting does (kombu's: two tries of 5 s); Redis calls are bounded by the
    client's socket timeouts instead."""
    from engine.broker.inspect import is_amqp, is_sqs

    if seconds and is_amqp(url):
        from engine.broker.amqp import bounded as amqp_bounded  # (kombu only for an AMQP URL)

        return amqp_bounded(url, seconds)
    if not seconds or not is_sqs(url):
        return url
    from engine.broker.sqs import bounded  # (boto only for an SQS URL)

    return bounded(url, seconds)


def masked(url: str) -> str:
    return mask_url(url)
