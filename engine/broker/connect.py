"""Pick a broker implementation from a URL's scheme (and the settings it carries)."""

from __future__ import annotations

from urllib.parse import urlsplit

from engine.broker.base import Broker
from engine.broker.fanout import RedisFanout
from engine.config import mask_url
from engine.exceptions import ImproperlyConfigured
from engine.extras import install_hint
from engine.redisconn import REDIS_SCHEMES, unsupported_url

AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
SQS_SCHEMES = ("sqs",)
BROKER_SCHEMES = (*REDIS_SCHEMES, *AMQP_SCHEMES, *SQS_SCHEMES)
BROKER_USE = ", ".join(f"{k}://" for k in BROKER_SCHEMES)  # every scheme a broker URL may have


def connect(url: str) -> Broker:
    scheme = urlsplit(url.split(";", 1)[0]).scheme.lower()
    if scheme in REDIS_SCHEMES:
        wait = getattr(url, "options", {}).get("wait_replicas")
        if wait:
            from engine.broker.replicated import ReplicatedBroker

            return ReplicatedBroker(url, replicas=wait[0], timeout=wait[1])
        from engine.broker.redis import RedisBroker

        return RedisBroker(url)
    if scheme in AMQP_SCHEMES:
        from engine.broker.amqp import AmqpBroker

        return AmqpBroker(url)
    if scheme in SQS_SCHEMES:
        try:
            from engine.broker.sqs import SqsBroker
        except ImportError as exc:
            raise ImproperlyConfigured(f"an sqs:// broker needs boto3 ({install_hint('sqs')}): {exc}") from None
        return SqsBroker(url)
    raise unsupported_url(url, BROKER_USE)  # (not the Redis ones alone: a broker may be any)


def worker_fanout(broker_url: str, backend_url: str | None) -> tuple[RedisFanout, str | None]:
    """A worker's broadcast channels (events, remote control) and stored state (revokes,
    history), and a note saying what that leaves off (None when nothing is).

    On a Redis broker all of it is on the broker. On AMQP the broadcasts are on RabbitMQ's
    ``celeryev`` and ``celery.pidbox`` exchanges (Celery's tools see the worker) and the stored
    state on the Redis result backend, the usual pairing."""
    scheme = urlsplit(str(broker_url).split(";", 1)[0]).scheme.lower()
    if scheme not in AMQP_SCHEMES + SQS_SCHEMES:
        return RedisFanout(broker_url), None
    backend_scheme = urlsplit(str(backend_url or "")).scheme.lower()
    if backend_scheme == "rpc":
        from engine.broker.amqp_fanout import AmqpFanout

        note = (
            f"broker {mask_url(str(broker_url))} is AMQP (preview) with rpc:// results: events and remote "
            "control are on RabbitMQ; revokes are kept in memory only (lost at a restart) and there is "
            "no task history (both need a Redis result backend)"
        )
        return AmqpFanout(broker_url, None), note
    if backend_url is None or backend_scheme not in REDIS_SCHEMES:
        kind = "an SQS" if scheme in SQS_SCHEMES else "an AMQP"
        raise ImproperlyConfigured(
            f"a worker on {kind} broker needs a Redis result backend for now (result_backend or "
            "TQCTL_BACKEND): its revokes and task history are kept there"
        )
    if scheme in SQS_SCHEMES:
        from engine.broker.sqs_fanout import SqsFanout

        return SqsFanout(backend_url), (
            f"broker {mask_url(str(broker_url))} is SQS: no events and no remote control (inspect, control, "
            f"events), as in Celery; revokes and history are on the result backend {mask_url(str(backend_url))}"
        )
    from engine.broker.amqp_fanout import AmqpFanout

    note = (
        f"broker {mask_url(str(broker_url))} is AMQP (preview): events and remote control are on "
        f"RabbitMQ, revokes and history on the result backend {mask_url(str(backend_url))}; "
        "tqctl and its console reach this worker (with TQCTL_BACKEND set to that backend)"
    )
    return AmqpFanout(broker_url, backend_url), note
