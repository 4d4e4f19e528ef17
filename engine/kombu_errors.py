"""Broker failures of a send as kombu's ``OperationalError``, which Celery's ``delay()`` raises:
an app that catches it (``except OperationalError:`` around ``delay()``, to degrade when the
broker is down) keeps catching ours.

Its own module, imported only when a send has failed: ``kombu.exceptions`` imports py-amqp, about
35 ms and 0.4 MB that every client and worker would otherwise pay at start.
"""

from __future__ import annotations

from kombu.exceptions import OperationalError

from engine.exceptions import BrokerUnavailable


class BrokerUnreachable(BrokerUnavailable, OperationalError):
    """A send that could not reach the broker: ``BrokerUnavailable`` (the engine's own handlers)
    and kombu's ``OperationalError`` (Celery apps') at once."""


def operational(exc: BrokerUnavailable) -> BrokerUnavailable:
    """The broker could not be reached: also an ``OperationalError``. The engine's own kinds of
    ``BrokerUnavailable`` (``NotReplicated``, a RabbitMQ confirm that never came) keep their type:
    callers test for them by name, and a message that may have been taken is no unreachable
    broker."""
    return BrokerUnreachable(*exc.args) if type(exc) is BrokerUnavailable else exc
