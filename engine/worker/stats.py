"""``inspect stats`` and ``inspect active_queues`` in the shapes a Celery 5.7 worker replies.

Tools read these replies by key (Flower's worker page indexes ``queue['no_ack']`` and
``stats['broker']``; a missing key is an HTTP 500), so every key a Celery worker sends is here,
with our values. The broker block never carries the password, as Celery's does not.
"""

from __future__ import annotations

import os
import resource
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from engine.config import mask_url, masked_setting
from engine.redisconn import REDIS_SCHEMES

if TYPE_CHECKING:
    from engine.worker.worker import Worker

RUSAGE_FIELDS = (
    "utime",
    "stime",
    "maxrss",
    "ixrss",
    "idrss",
    "isrss",
    "minflt",
    "majflt",
    "nswap",
    "inblock",
    "oublock",
    "msgsnd",
    "msgrcv",
    "nsignals",
    "nvcsw",
    "nivcsw",
)
DEFAULT_PORT = 6379
CONNECT_TIMEOUT = 4  # Celery's broker_connection_timeout default
HEARTBEAT = 120.0  # Celery's broker_heartbeat default


def queue_as_dict(name: str) -> dict[str, Any]:
    """kombu's ``Queue.as_dict(recurse=True)`` for the queue Celery declares for ``-Q name``:
    a direct exchange of the same name, routed by the name, acknowledged messages."""
    exchange = {
        "name": name,
        "type": "direct",
        "arguments": None,
        "durable": True,
        "passive": False,
        "auto_delete": False,
        "delivery_mode": None,
        "no_declare": False,
    }
    return {
        "name": name,
        "exchange": exchange,
        "routing_key": name,
        "queue_arguments": None,
        "binding_arguments": None,
        "consumer_arguments": None,
        "durable": True,
        "exclusive": False,
        "auto_delete": False,
        "no_ack": False,
        "alias": None,
        "bindings": [],
        "no_declare": None,
        "expires": None,
        "message_ttl": None,
        "max_length": None,
        "max_length_bytes": None,
        "max_priority": None,
    }


def broker_info(url: str, transport_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """kombu's ``Connection.info()`` for ``url``, minus the password (Celery pops it too)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in REDIS_SCHEMES:  # AMQP and SQS: kombu's own (already imported by those brokers)
        import kombu

        info = kombu.Connection(url, transport_options=dict(transport_options or {})).info()
        info.pop("password", None)
        return {**info, "transport_options": _masked_options(transport_options)}
    socket_url = "socket" in scheme
    query = dict(parse_qsl(parts.query))
    vhost = "/"
    if not socket_url and parts.path.strip("/"):
        vhost = unquote(parts.path.strip("/"))
    ssl: Any = False
    if scheme == "rediss":
        ssl = {k: v for k, v in query.items() if k.startswith("ssl")} or True
    return {
        "hostname": mask_url(url) if socket_url else parts.hostname,
        "userid": unquote(parts.username) if parts.username else None,
        "virtual_host": vhost,
        "port": parts.port or DEFAULT_PORT,
        "insist": False,
        "ssl": ssl,
        "transport": "rediss" if scheme == "rediss" else "redis",
        "connect_timeout": CONNECT_TIMEOUT,
        "transport_options": _masked_options(transport_options),
        "login_method": None,
        "uri_prefix": "redis" if "+" in scheme else None,
        "heartbeat": HEARTBEAT,
        "failover_strategy": "round-robin",
        "alternates": [],
        "credential_provider": None,
    }


def rusage() -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {name: getattr(usage, f"ru_{name}") for name in RUSAGE_FIELDS}


def pool_info(worker: Worker, max_concurrency: int) -> dict[str, Any]:
    """Celery's prefork ``pool`` block; ``max-concurrency`` is the pool's size at start (Celery's
    pool limit: ``-c``, or the autoscale minimum), which ``pool_grow`` does not change."""
    conf = worker.app.conf
    info: dict[str, Any] = {
        "implementation": worker.pool.kind,
        "max-concurrency": max_concurrency,
        "processes": worker.pool.processes(),
        "max-tasks-per-child": conf.get("worker_max_tasks_per_child") or "N/A",
        "put-guarded-by-semaphore": False,
        "timeouts": [conf.get("task_soft_time_limit") or 0, conf.get("task_time_limit") or 0],
        "writes": _writes(worker),
    }
    if worker.pool.kind == "threads":
        info["threads"] = worker.pool.size()
    if worker.autoscale:  # ours before Celery's dict existed; the console still reads it
        info["autoscale"] = list(worker.autoscale)
    return info


def _writes(worker: Worker) -> dict[str, Any]:
    """Billiard's write statistics, with what we count: tasks handed to the pool."""
    total = sum(worker.processed.values()) + len(worker.active)
    size = worker.pool.size()
    return {
        "total": total,
        "avg": f"{(1.0 / size if size else 0.0):.2f}" if total else "0.00",
        "all": "",
        "raw": "",
        "strategy": "fair",
        "inqueues": {"total": size, "active": len(worker.active)},
    }


def autoscaler_info(worker: Worker) -> dict[str, int] | None:
    if not worker.autoscale:
        return None
    high, low = worker.autoscale
    return {"max": high, "min": low, "current": worker.pool.size(), "qty": len(worker.reserved)}


def worker_stats(worker: Worker, clock: int, max_concurrency: int) -> dict[str, Any]:
    """The whole ``inspect stats`` reply, keys in Celery's order (who we are is in the heartbeats)."""
    stats: dict[str, Any] = {
        "total": dict(worker.processed),
        "pid": os.getpid(),
        "clock": str(clock),
        "uptime": round(time.time() - worker.started_at),
        "pool": pool_info(worker, max_concurrency),
    }
    autoscaler = autoscaler_info(worker)
    if autoscaler is not None:
        stats["autoscaler"] = autoscaler
    stats["broker"] = broker_info(worker.broker.url, worker.app.conf.get("broker_transport_options"))
    stats["prefetch_count"] = worker.prefetch
    stats["rusage"] = rusage()
    return stats


# The Celery release whose wire protocol, task API and remote-control replies we follow.
CELERY_COMPAT = "5.7.0"


def bugreport(w: Worker) -> str:
    """``inspect report``: Celery's ``bugreport`` layout, so tools and people reading it find its lines.

    ``software -> celery:`` names the Celery release we are compatible with and, beside it, what
    actually runs (tqctl and its version): a bug report must say which engine it came from."""
    import platform
    from importlib import metadata

    try:
        ours = metadata.version("tqctl")
    except metadata.PackageNotFoundError:
        ours = "unknown"
    return (
        f"software -> celery:{CELERY_COMPAT} (tqctl {ours}, Celery-compatible) py:{platform.python_version()}\n"
        f"            hiredis:{metadata.version('hiredis')}\n"
        f"platform -> system:{platform.system()} arch:{', '.join(x for x in platform.architecture() if x)}\n"
        f"            kernel version:{platform.release()} imp:{platform.python_implementation()}\n"
        f"loader   -> {type(w.app).__module__}.{type(w.app).__qualname__}\n"
        f"settings -> transport:redis results:{mask_url(w.app.backend_url()) or 'disabled'}\n"
        f"worker   -> {w.hostname} pool={w.pool.kind} queues={','.join(w.queues)}\n"
    )


def _masked_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """The transport options with their secrets masked, as ``inspect conf`` shows them: a
    Sentinel's password (``sentinel_kwargs``) or SQS's ``predefined_queues`` keys were in clear."""
    return dict(masked_setting("broker_transport_options", dict(options or {})))
