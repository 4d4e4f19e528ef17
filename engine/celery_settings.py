"""Which setting names are Celery 5.7's, and which of those the engine honours.

The table lists every name in Celery 5.7's ``celery/app/defaults.py`` (written out here: Celery
is a test dependency only, never imported at run time). A worker warns at start, one line per
name, about a Celery setting it ignores and about a name that is no setting at all (a typo),
with the closest valid name. ``README`` keeps the human-readable table.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from typing import Any

CELERY_SETTINGS = frozenset(
    {
        "accept_content",
        "arangodb_backend_settings",
        "azureblockblob_base_path",
        "azureblockblob_connection_timeout",
        "azureblockblob_container_name",
        "azureblockblob_read_timeout",
        "azureblockblob_retry_increment_base",
        "azureblockblob_retry_initial_backoff_sec",
        "azureblockblob_retry_max_attempts",
        "beat_cron_starting_deadline",
        "beat_enable_remote_control",
        "beat_max_loop_interval",
        "beat_remote_control_max_tick_age",
        "beat_schedule",
        "beat_schedule_filename",
        "beat_scheduler",
        "beat_sync_every",
        "broker_channel_error_retry",
        "broker_connection_max_retries",
        "broker_connection_retry",
        "broker_connection_retry_on_startup",
        "broker_connection_timeout",
        "broker_failover_strategy",
        "broker_heartbeat",
        "broker_heartbeat_checkrate",
        "broker_host",
        "broker_login_method",
        "broker_native_delayed_delivery_queue_type",
        "broker_password",
        "broker_pool_acquire_timeout",
        "broker_pool_limit",
        "broker_port",
        "broker_read_url",
        "broker_transport",
        "broker_transport_options",
        "broker_url",
        "broker_use_ssl",
        "broker_user",
        "broker_vhost",
        "broker_write_url",
        "cache_backend",
        "cache_backend_options",
        "cassandra_auth_kwargs",
        "cassandra_auth_provider",
        "cassandra_bundle_path",
        "cassandra_entry_ttl",
        "cassandra_keyspace",
        "cassandra_options",
        "cassandra_port",
        "cassandra_read_consistency",
        "cassandra_servers",
        "cassandra_table",
        "cassandra_write_consistency",
        "control_exchange",
        "control_queue_durable",
        "control_queue_exclusive",
        "control_queue_expires",
        "control_queue_ttl",
        "cosmosdbsql_collection_name",
        "cosmosdbsql_consistency_level",
        "cosmosdbsql_database_name",
        "cosmosdbsql_max_retry_attempts",
        "cosmosdbsql_max_retry_wait_time",
        "couchbase_backend_settings",
        "database_create_tables_at_setup",
        "database_engine_callback",
        "database_engine_options",
        "database_short_lived_sessions",
        "database_table_names",
        "database_table_schemas",
        "database_url",
        "elasticsearch_max_retries",
        "elasticsearch_retry_on_timeout",
        "elasticsearch_save_meta_as_text",
        "elasticsearch_timeout",
        "enable_utc",
        "event_exchange",
        "event_queue_durable",
        "event_queue_exclusive",
        "event_queue_expires",
        "event_queue_prefix",
        "event_queue_ttl",
        "event_serializer",
        "gcs_base_path",
        "gcs_bucket",
        "gcs_project",
        "gcs_ttl",
        "imports",
        "include",
        "mongodb_backend_settings",
        "redis_backend_use_ssl",
        "redis_db",
        "redis_host",
        "redis_max_connections",
        "redis_password",
        "redis_port",
        "redis_retry_on_timeout",
        "redis_socket_connect_timeout",
        "redis_socket_keepalive",
        "redis_socket_timeout",
        "redis_username",
        "result_accept_content",
        "result_backend",
        "result_backend_always_retry",
        "result_backend_base_sleep_between_retries_ms",
        "result_backend_max_retries",
        "result_backend_max_sleep_between_retries_ms",
        "result_backend_transport_options",
        "result_cache_max",
        "result_chord_expires",
        "result_chord_join_timeout",
        "result_chord_retry_interval",
        "result_compression",
        "result_exchange",
        "result_exchange_type",
        "result_expires",
        "result_extended",
        "result_failure_expires",
        "result_persistent",
        "result_serializer",
        "s3_access_key_id",
        "s3_base_path",
        "s3_bucket",
        "s3_endpoint_url",
        "s3_region",
        "s3_secret_access_key",
        "security_cert_store",
        "security_certificate",
        "security_digest",
        "security_key",
        "security_key_password",
        "task_acks_late",
        "task_acks_on_failure",
        "task_acks_on_failure_or_timeout",
        "task_acks_on_timeout",
        "task_allow_error_cb_on_chord_header",
        "task_always_eager",
        "task_annotations",
        "task_compression",
        "task_create_missing_queue_exchange_type",
        "task_create_missing_queue_type",
        "task_create_missing_queues",
        "task_default_delivery_mode",
        "task_default_exchange",
        "task_default_exchange_type",
        "task_default_priority",
        "task_default_queue",
        "task_default_queue_type",
        "task_default_rate_limit",
        "task_default_routing_key",
        "task_eager_propagates",
        "task_ignore_result",
        "task_inherit_parent_priority",
        "task_protocol",
        "task_publish_retry",
        "task_publish_retry_policy",
        "task_queue_max_priority",
        "task_queues",
        "task_reject_on_worker_lost",
        "task_remote_tracebacks",
        "task_repr_maxlevels",
        "task_retry_on_worker_lost",
        "task_routes",
        "task_send_sent_event",
        "task_serializer",
        "task_soft_time_limit",
        "task_store_eager_result",
        "task_store_errors_even_if_ignored",
        "task_time_limit",
        "task_track_started",
        "timezone",
        "worker_agent",
        "worker_autoscaler",
        "worker_cancel_long_running_tasks_on_connection_loss",
        "worker_concurrency",
        "worker_consumer",
        "worker_deduplicate_successful_tasks",
        "worker_detect_quorum_queues",
        "worker_direct",
        "worker_disable_prefetch",
        "worker_disable_rate_limits",
        "worker_enable_prefetch_count_reduction",
        "worker_enable_remote_control",
        "worker_enable_soft_shutdown_on_idle",
        "worker_eta_task_limit",
        "worker_hijack_root_logger",
        "worker_log_color",
        "worker_log_datefmt",
        "worker_log_format",
        "worker_lost_wait",
        "worker_max_memory_per_child",
        "worker_max_tasks_per_child",
        "worker_pool",
        "worker_pool_putlocks",
        "worker_pool_restarts",
        "worker_pool_start_method",
        "worker_prefetch_multiplier",
        "worker_proc_alive_timeout",
        "worker_redirect_stdouts",
        "worker_redirect_stdouts_level",
        "worker_send_task_events",
        "worker_soft_shutdown_timeout",
        "worker_state_db",
        "worker_task_log_datefmt",
        "worker_task_log_format",
        "worker_timer",
        "worker_timer_precision",
    }
)

# Celery 3's names (``CELERY_ACKS_LATE``, ``BROKER_URL``...), lowercased, → today's; old config
# modules keep working, as they do in Celery 5.7.
OLD_NAMES = {
    "celery_accept_content": "accept_content",
    "celery_acks_late": "task_acks_late",
    "celery_acks_on_failure": "task_acks_on_failure",
    "celery_acks_on_failure_or_timeout": "task_acks_on_failure_or_timeout",
    "celery_acks_on_timeout": "task_acks_on_timeout",
    "celery_allow_error_cb_on_chord_header": "task_allow_error_cb_on_chord_header",
    "celery_always_eager": "task_always_eager",
    "celery_annotations": "task_annotations",
    "celery_arangodb_backend_settings": "arangodb_backend_settings",
    "celery_cache_backend": "cache_backend",
    "celery_cache_backend_options": "cache_backend_options",
    "celery_couchbase_backend_settings": "couchbase_backend_settings",
    "celery_create_missing_queue_exchange_type": "task_create_missing_queue_exchange_type",
    "celery_create_missing_queue_type": "task_create_missing_queue_type",
    "celery_create_missing_queues": "task_create_missing_queues",
    "celery_default_delivery_mode": "task_default_delivery_mode",
    "celery_default_exchange": "task_default_exchange",
    "celery_default_exchange_type": "task_default_exchange_type",
    "celery_default_priority": "task_default_priority",
    "celery_default_queue": "task_default_queue",
    "celery_default_queue_type": "task_default_queue_type",
    "celery_default_rate_limit": "task_default_rate_limit",
    "celery_default_routing_key": "task_default_routing_key",
    "celery_disable_rate_limits": "worker_disable_rate_limits",
    "celery_eager_propagates_exceptions": "task_eager_propagates",
    "celery_elasticsearch_max_retries": "elasticsearch_max_retries",
    "celery_elasticsearch_retry_on_timeout": "elasticsearch_retry_on_timeout",
    "celery_elasticsearch_save_meta_as_text": "elasticsearch_save_meta_as_text",
    "celery_elasticsearch_timeout": "elasticsearch_timeout",
    "celery_enable_remote_control": "worker_enable_remote_control",
    "celery_event_exchange": "event_exchange",
    "celery_event_queue_durable": "event_queue_durable",
    "celery_event_queue_exclusive": "event_queue_exclusive",
    "celery_event_queue_expires": "event_queue_expires",
    "celery_event_queue_prefix": "event_queue_prefix",
    "celery_event_queue_ttl": "event_queue_ttl",
    "celery_event_serializer": "event_serializer",
    "celery_ignore_result": "task_ignore_result",
    "celery_imports": "imports",
    "celery_include": "include",
    "celery_inherit_parent_priority": "task_inherit_parent_priority",
    "celery_max_cached_results": "result_cache_max",
    "celery_message_compression": "task_compression",
    "celery_mongodb_backend_settings": "mongodb_backend_settings",
    "celery_queue_max_priority": "task_queue_max_priority",
    "celery_queues": "task_queues",
    "celery_redirect_stdouts": "worker_redirect_stdouts",
    "celery_redirect_stdouts_level": "worker_redirect_stdouts_level",
    "celery_redis_backend_use_ssl": "redis_backend_use_ssl",
    "celery_redis_db": "redis_db",
    "celery_redis_host": "redis_host",
    "celery_redis_max_connections": "redis_max_connections",
    "celery_redis_password": "redis_password",
    "celery_redis_port": "redis_port",
    "celery_redis_retry_on_timeout": "redis_retry_on_timeout",
    "celery_redis_socket_connect_timeout": "redis_socket_connect_timeout",
    "celery_redis_socket_keepalive": "redis_socket_keepalive",
    "celery_redis_socket_timeout": "redis_socket_timeout",
    "celery_redis_username": "redis_username",
    "celery_reject_on_worker_lost": "task_reject_on_worker_lost",
    "celery_remote_tracebacks": "task_remote_tracebacks",
    "celery_repr_maxlevels": "task_repr_maxlevels",
    "celery_result_backend": "result_backend",
    "celery_result_backend_always_retry": "result_backend_always_retry",
    "celery_result_backend_base_sleep_between_retries_ms": "result_backend_base_sleep_between_retries_ms",
    "celery_result_backend_max_retries": "result_backend_max_retries",
    "celery_result_backend_max_sleep_between_retries_ms": "result_backend_max_sleep_between_retries_ms",
    "celery_result_backend_transport_options": "result_backend_transport_options",
    "celery_result_chord_expires": "result_chord_expires",
    "celery_result_chord_join_timeout": "result_chord_join_timeout",
    "celery_result_chord_retry_interval": "result_chord_retry_interval",
    "celery_result_compression": "result_compression",
    "celery_result_db_short_lived_sessions": "database_short_lived_sessions",
    "celery_result_db_tablenames": "database_table_names",
    "celery_result_dburi": "database_url",
    "celery_result_engine_options": "database_engine_options",
    "celery_result_exchange": "result_exchange",
    "celery_result_exchange_type": "result_exchange_type",
    "celery_result_extended": "result_extended",
    "celery_result_failure_expires": "result_failure_expires",
    "celery_result_persistent": "result_persistent",
    "celery_result_serializer": "result_serializer",
    "celery_retry_on_worker_lost": "task_retry_on_worker_lost",
    "celery_routes": "task_routes",
    "celery_security_cert_store": "security_cert_store",
    "celery_security_certificate": "security_certificate",
    "celery_security_digest": "security_digest",
    "celery_security_key": "security_key",
    "celery_security_key_password": "security_key_password",
    "celery_send_events": "worker_send_task_events",
    "celery_send_task_sent_event": "task_send_sent_event",
    "celery_store_eager_result": "task_store_eager_result",
    "celery_store_errors_even_if_ignored": "task_store_errors_even_if_ignored",
    "celery_task_protocol": "task_protocol",
    "celery_task_publish_retry": "task_publish_retry",
    "celery_task_publish_retry_policy": "task_publish_retry_policy",
    "celery_task_result_expires": "result_expires",
    "celery_task_serializer": "task_serializer",
    "celery_timezone": "timezone",
    "celery_track_started": "task_track_started",
    "celery_worker_direct": "worker_direct",
    "celerybeat_cron_starting_deadline": "beat_cron_starting_deadline",
    "celerybeat_enable_remote_control": "beat_enable_remote_control",
    "celerybeat_max_loop_interval": "beat_max_loop_interval",
    "celerybeat_remote_control_max_tick_age": "beat_remote_control_max_tick_age",
    "celerybeat_schedule": "beat_schedule",
    "celerybeat_schedule_filename": "beat_schedule_filename",
    "celerybeat_scheduler": "beat_scheduler",
    "celerybeat_sync_every": "beat_sync_every",
    "celeryd_agent": "worker_agent",
    "celeryd_autoscaler": "worker_autoscaler",
    "celeryd_cancel_long_running_tasks_on_connection_loss": "worker_cancel_long_running_tasks_on_connection_loss",
    "celeryd_concurrency": "worker_concurrency",
    "celeryd_consumer": "worker_consumer",
    "celeryd_deduplicate_successful_tasks": "worker_deduplicate_successful_tasks",
    "celeryd_detect_quorum_queues": "worker_detect_quorum_queues",
    "celeryd_disable_prefetch": "worker_disable_prefetch",
    "celeryd_enable_prefetch_count_reduction": "worker_enable_prefetch_count_reduction",
    "celeryd_enable_soft_shutdown_on_idle": "worker_enable_soft_shutdown_on_idle",
    "celeryd_eta_task_limit": "worker_eta_task_limit",
    "celeryd_hijack_root_logger": "worker_hijack_root_logger",
    "celeryd_log_color": "worker_log_color",
    "celeryd_log_datefmt": "worker_log_datefmt",
    "celeryd_log_format": "worker_log_format",
    "celeryd_max_memory_per_child": "worker_max_memory_per_child",
    "celeryd_max_tasks_per_child": "worker_max_tasks_per_child",
    "celeryd_pool": "worker_pool",
    "celeryd_pool_putlocks": "worker_pool_putlocks",
    "celeryd_pool_restarts": "worker_pool_restarts",
    "celeryd_pool_start_method": "worker_pool_start_method",
    "celeryd_prefetch_multiplier": "worker_prefetch_multiplier",
    "celeryd_proc_alive_timeout": "worker_proc_alive_timeout",
    "celeryd_soft_shutdown_timeout": "worker_soft_shutdown_timeout",
    "celeryd_state_db": "worker_state_db",
    "celeryd_task_log_datefmt": "worker_task_log_datefmt",
    "celeryd_task_log_format": "worker_task_log_format",
    "celeryd_task_soft_time_limit": "task_soft_time_limit",
    "celeryd_task_time_limit": "task_time_limit",
    "celeryd_timer": "worker_timer",
    "celeryd_timer_precision": "worker_timer_precision",
    "celeryd_worker_lost_wait": "worker_lost_wait",
}

# Settings Celery 3 already named as today, only in upper case (``BROKER_URL``, ``CELERY_RESULT_BACKEND``
# is in OLD_NAMES): the rest of Celery's old names.
_OLD_NAMES_SAME = frozenset(
    name
    for name in CELERY_SETTINGS
    if name.partition("_")[0] in {"broker", "cassandra", "s3", "azureblockblob", "gcs", "control", "cosmosdbsql"}
    or name
    in {
        "enable_utc",
        "result_accept_content",
        "database_create_tables_at_setup",
        "database_engine_callback",
        "database_table_schemas",
    }
)

# Every old name exactly as Celery 5.7 knows it (upper case; ``celery_acks_late`` is no old name) → today's.
OLD_TO_NEW = {old.upper(): new for old, new in OLD_NAMES.items()} | {name.upper(): name for name in _OLD_NAMES_SAME}
NEW_TO_OLD = {new: old for old, new in OLD_TO_NEW.items()}


def mixed_names_error(names: Iterable[str]) -> str | None:
    """Celery's refusal of a config source that mixes old and new names, or None when it does not.
    The minority form is the one to rename (a tie: the old names); a setting given under both of
    its names is no mix."""
    given = set(names)
    old = {name for name in given if name in OLD_TO_NEW}
    new = given & CELERY_SETTINGS
    if not old or not new:
        return None
    if len(old) > len(new):
        odd = {name: NEW_TO_OLD[name] for name in new if NEW_TO_OLD[name] not in given}
        head = "Cannot mix new setting names with old setting names, please rename the following settings"
        head, tail = f"{head} to use the old format: ", " (or change all of the settings to use the new format)"
    else:
        odd = {name: OLD_TO_NEW[name] for name in old if OLD_TO_NEW[name] not in given}
        head, tail = "Cannot mix new and old setting keys, please rename the following settings to the new format: ", ""
    if not odd:
        return None
    return head + ", ".join(f"{name} -> {odd[name]}" for name in sorted(odd)) + tail


# Celery settings that do here what they do in Celery.
HONOURED = frozenset(
    {
        "accept_content",
        "beat_schedule",
        "broker_transport_options",  # Sentinel's master_name...; all of them on SQS
        "broker_pool_acquire_timeout",
        "broker_url",
        "enable_utc",
        "imports",
        "include",
        "result_backend",
        "result_chord_join_timeout",  # a saved nested chord header is joined with it
        "result_expires",
        "task_acks_late",
        "task_always_eager",
        "task_default_priority",
        "task_default_queue",
        "task_default_rate_limit",
        "task_eager_propagates",
        "task_ignore_result",
        "task_routes",
        "task_send_sent_event",
        "task_serializer",
        "task_soft_time_limit",
        "task_time_limit",
        "task_track_started",
        "task_store_eager_result",
        "task_store_errors_even_if_ignored",
        "timezone",
        "worker_concurrency",
        "worker_hijack_root_logger",
        "worker_log_format",
        "worker_max_memory_per_child",  # prefork children are recycled (engine/worker/recycle.py)
        "worker_max_tasks_per_child",
        "worker_prefetch_multiplier",
        "worker_send_task_events",
        "worker_task_log_format",
        "result_extended",
        "task_inherit_parent_priority",
        "task_annotations",
        # On Redis these already behave as their value asks: a failed late-ack task's message is
        # removed either way (Celery rejects it without requeue, which Redis drops), queues are created
        # on first use, and protocol 2 is the only one sent.
        "task_acks_on_failure_or_timeout",
        # Connection settings, read where clients are built (engine/redisconn.py): TLS for the broker
        # and the Redis backend, the backend's Sentinel options, its pool size, and the queue
        # declarations an AMQP broker must agree on with Celery's.
        "broker_use_ssl",
        "redis_backend_use_ssl",
        "result_backend_transport_options",  # Sentinel's master_name...; result_chord_ordered
        "redis_max_connections",
        "task_queue_max_priority",
        "task_default_queue_type",
        "broker_native_delayed_delivery_queue_type",
        "beat_max_loop_interval",  # the longest beat sleeps between checks (engine/beat_scheduler.py)
    }
)

# Ignored settings whose value here is what the engine does anyway: set to that value, no warning.
ALREADY = {
    "task_create_missing_queues": True,
    "task_protocol": 2,
    "result_serializer": "json",
    "event_serializer": "json",
    "result_accept_content": ["json"],
    "broker_connection_retry_on_startup": False,
    "task_default_exchange_type": "direct",
    "worker_enable_remote_control": True,
}


def is_project_setting(name: str) -> bool:
    return name.startswith("tqctl_")


def startup_warnings(explicit: Mapping[str, Any], own: Iterable[str] = ()) -> list[str]:
    """One line per explicitly set name: a Celery setting that has no effect here, or an unknown name."""
    valid = CELERY_SETTINGS | frozenset(own)
    lines = []
    for name in sorted(explicit):
        if isinstance(explicit[name], types.ModuleType) or name.startswith("_"):
            continue  # a config module's own imports, not settings
        if name in ALREADY and explicit[name] == ALREADY[name]:
            continue
        if name in CELERY_SETTINGS and name not in HONOURED:
            lines.append(f"setting {name!r} is a Celery setting this engine ignores (no effect)")
        elif name not in valid and not is_project_setting(name):
            import difflib  # only for a misspelt name: every worker process would hold it

            close = difflib.get_close_matches(name, sorted(valid), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            lines.append(f"setting {name!r} is not a Celery setting (misspelt?){hint}")
    return lines
