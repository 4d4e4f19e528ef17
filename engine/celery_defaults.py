"""The defaults of Celery 5.7's settings that ``engine.config.DEFAULTS`` does not hold, so code that
reads ``app.conf.task_default_delivery_mode`` or ``app.conf["task_publish_retry"]`` sees what it saw
under Celery instead of an ``AttributeError``/``KeyError``.

Written out (Celery is a test dependency only); every other name of ``CELERY_SETTINGS`` defaults to
None there, and so here. Left out on purpose: the defaults of backends we do not have (Azure, Cosmos
DB, GCS, Cassandra, SQLAlchemy, Elasticsearch, memcached) and the Celery class paths
(``beat_scheduler``, ``worker_autoscaler``, ``worker_consumer``), which name nothing here: None.
Reading one of these does not make the engine honour it; ``celery_settings.HONOURED`` says which it does.
"""

from __future__ import annotations

import math
from typing import Any

CELERY_DEFAULTS: dict[str, Any] = {
    "beat_enable_remote_control": False,
    "beat_max_loop_interval": 0,
    "beat_schedule_filename": "celerybeat-schedule",
    "beat_sync_every": 0,
    "broker_channel_error_retry": False,
    "broker_connection_max_retries": 100,
    "broker_connection_retry": True,
    "broker_connection_timeout": 4,
    "broker_heartbeat": 120,
    "broker_heartbeat_checkrate": 3.0,
    "broker_native_delayed_delivery_queue_type": "quorum",
    "broker_pool_limit": 10,
    "control_exchange": "celery",
    "control_queue_durable": False,
    "control_queue_exclusive": True,
    "control_queue_expires": 10.0,
    "control_queue_ttl": 300.0,
    "event_exchange": "celeryev",
    "event_queue_durable": False,
    "event_queue_exclusive": True,
    "event_queue_expires": 60.0,
    "event_queue_prefix": "celeryev",
    "event_queue_ttl": 5.0,
    "event_serializer": "json",
    "redis_retry_on_timeout": False,
    "redis_socket_keepalive": False,
    "redis_socket_timeout": 120.0,
    "result_backend_always_retry": False,
    "result_backend_base_sleep_between_retries_ms": 10,
    "result_backend_max_retries": math.inf,
    "result_backend_max_sleep_between_retries_ms": 10000,
    "result_cache_max": -1,
    "result_chord_join_timeout": 3.0,
    "result_chord_retry_interval": 1.0,
    "result_exchange": "celeryresults",
    "result_exchange_type": "direct",
    "security_digest": "sha256",
    "task_allow_error_cb_on_chord_header": False,
    "task_create_missing_queue_type": "classic",
    "task_create_missing_queues": True,
    "task_default_delivery_mode": 2,
    "task_default_exchange_type": "direct",
    "task_default_queue_type": "classic",
    "task_inherit_parent_priority": False,
    "task_protocol": 2,
    "task_publish_retry": True,
    "task_publish_retry_policy": {"max_retries": 3, "interval_start": 0, "interval_max": 1, "interval_step": 0.2},
    "task_remote_tracebacks": False,
    "task_repr_maxlevels": 3,
    "task_retry_on_worker_lost": False,
    "worker_cancel_long_running_tasks_on_connection_loss": False,
    "worker_deduplicate_successful_tasks": False,
    "worker_detect_quorum_queues": True,
    "worker_direct": False,
    "worker_disable_prefetch": False,
    "worker_disable_rate_limits": False,
    "worker_enable_prefetch_count_reduction": True,
    "worker_enable_remote_control": True,
    "worker_enable_soft_shutdown_on_idle": False,
    "worker_lost_wait": 10.0,
    "worker_pool": "prefork",
    "worker_pool_putlocks": True,
    "worker_pool_restarts": False,
    "worker_pool_start_method": "fork",
    "worker_proc_alive_timeout": 4.0,
    "worker_redirect_stdouts": True,
    "worker_redirect_stdouts_level": "WARNING",
    "worker_soft_shutdown_timeout": 0.0,
    "worker_timer_precision": 1.0,
}
