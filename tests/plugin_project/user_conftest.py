"""A user's conftest: settings for every test app, as a Celery user writes ``celery_config``."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def tqctl_config() -> dict[str, Any]:
    return {"task_default_queue": "plugin-tests", "result_expires": 600}


@pytest.fixture(scope="session")
def tqctl_worker_parameters() -> dict[str, Any]:
    return {"concurrency": 2}
