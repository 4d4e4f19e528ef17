"""pytest fixtures for testing tasks, registered as the ``tqctl`` plugin (entry point ``pytest11``).

Celery's plugin, under tqctl names: ``tqctl_config`` (override it in your conftest, as
``celery_config``), ``tqctl_app`` and ``tqctl_worker`` per test, ``tqctl_session_app`` and
``tqctl_session_worker`` per session, ``tqctl_worker_parameters`` for ``start_worker``. The broker
is ``tqctl_config["broker_url"]``, else ``TQCTL_BROKER``, else a private server started for the
session in a temporary folder (and stopped at its end). Nothing starts unless a fixture is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # imported by the fixtures: loading the plugin (in every pytest run) stays cheap
    from engine.app import App
    from engine.worker.worker import Worker


@pytest.fixture(scope="session")
def tqctl_config() -> dict[str, Any]:
    """Settings for the test apps; override in a conftest: ``return {"task_always_eager": ...}``."""
    return {}


@pytest.fixture(scope="session")
def tqctl_worker_parameters() -> dict[str, Any]:
    """Keyword arguments for ``start_worker`` (pool, concurrency, queues, ...)."""
    return {}


@pytest.fixture(scope="session")
def tqctl_broker_url(tqctl_config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = tqctl_config.get("broker_url") or os.environ.get("TQCTL_BROKER")
    if url:
        yield url
        return
    from engine.bundled import start_private

    with start_private(tmp_path_factory.mktemp("tqctl-broker")) as server:
        yield server.url


def _app(name: str, url: str, config: dict[str, Any]) -> App:
    from engine.app import App

    app = App(name)
    app.conf.update({"broker_url": url, "result_backend": url, **config})
    return app


@pytest.fixture
def tqctl_app(tqctl_broker_url: str, tqctl_config: dict[str, Any]) -> Iterator[App]:
    """A fresh app for one test; define tasks on it inside the test."""
    app = _app("tqctl_test", tqctl_broker_url, tqctl_config)
    yield app
    app.close()


@pytest.fixture
def tqctl_worker(tqctl_app: App, tqctl_worker_parameters: dict[str, Any]) -> Iterator[Worker]:
    """A worker for ``tqctl_app`` running in this process for one test."""
    from engine.testing import start_worker

    with start_worker(tqctl_app, **tqctl_worker_parameters) as worker:
        yield worker


@pytest.fixture(scope="session")
def tqctl_session_app(tqctl_broker_url: str, tqctl_config: dict[str, Any]) -> Iterator[App]:
    app = _app("tqctl_session", tqctl_broker_url, tqctl_config)
    yield app
    app.close()


@pytest.fixture(scope="session")
def tqctl_session_worker(tqctl_session_app: App, tqctl_worker_parameters: dict[str, Any]) -> Iterator[Worker]:
    """One worker for the whole session (faster when many tests share ``tqctl_session_app``)."""
    from engine.testing import start_worker

    with start_worker(tqctl_session_app, **tqctl_worker_parameters) as worker:
        yield worker
