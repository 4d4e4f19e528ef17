"""The worker's start-up check of the app's settings, read from a real worker's log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, WorkerProcess

pytestmark = pytest.mark.integration

# Celery settings the engine reads (engine/redisconn.py, engine/beat_scheduler.py), each set to a
# value that changes nothing on the test's unix-socket Redis.
HONOURED_HERE = {
    "broker_use_ssl": {"ssl_cert_reqs": "none"},
    "redis_backend_use_ssl": {"ssl_cert_reqs": "none"},
    "result_backend_transport_options": {"master_name": "mymaster"},
    "task_queue_max_priority": 10,
    "task_default_queue_type": "classic",
    "broker_native_delayed_delivery_queue_type": "classic",
    "redis_max_connections": 64,
    "beat_max_loop_interval": 10,
}


def test_settings_that_take_effect_are_not_called_ignored_at_start(
    start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """Before: a worker whose app set broker_use_ssl, redis_backend_use_ssl,
    result_backend_transport_options (and five more the engine reads) logged "setting '...' is a
    Celery setting this engine ignores (no effect)" for each. Now only a setting that is really
    ignored (worker_lost_wait) is warned about."""
    (tmp_path / "settings_app.py").write_text(
        "from engine import App\n"
        "app = App('settings_app')\n"
        f"app.conf.update({HONOURED_HERE!r}, worker_lost_wait=10)\n"
        "@app.task\n"
        "def add(x, y):\n"
        "    return x + y\n"
    )
    worker = start_worker(env={"PYTHONPATH": f"{tmp_path}:{ROOT}"}, app="settings_app")  # warnings come before ready
    log = worker.log()
    assert "setting 'worker_lost_wait' is a Celery setting this engine ignores (no effect)" in log
    warned = [name for name in HONOURED_HERE if f"setting {name!r} is a Celery setting" in log]
    assert warned == [], log
