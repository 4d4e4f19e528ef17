"""Fixtures for tests that run real worker processes against the session's real server."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis

from tests.integration.harness import CeleryPrefork, CeleryWorkerProcess, WorkerProcess
from tests.integration.rabbitmq import amqp_client, amqp_url, rabbitmq  # noqa: F401 - the AMQP tests' fixtures

pytestmark = pytest.mark.integration


@pytest.fixture
def broker_url(redis_url: str, redis_client: redis.Redis) -> str:
    """The session server, emptied for this test (``redis_client`` flushes it)."""
    return redis_url


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.txt"
    path.touch()
    return path


def client_app(module_name: str, broker_url: str) -> Iterator[ModuleType]:
    """A test app module as a client in this process, pointed at this test's server."""
    module = importlib.import_module(module_name)
    module.app.close()
    module.app.conf.broker_url = broker_url
    module.app.conf.result_backend = broker_url
    yield module
    module.app.close()


@pytest.fixture
def shop(broker_url: str) -> Iterator[ModuleType]:
    yield from client_app("tests.apps.shop", broker_url)


@pytest.fixture
def canvas(broker_url: str) -> Iterator[ModuleType]:
    yield from client_app("tests.apps.canvas", broker_url)


@pytest.fixture
def rel(broker_url: str) -> Iterator[ModuleType]:
    """tests/apps/reliability.py: ledger-writing tasks and a small message-size limit."""
    yield from client_app("tests.apps.reliability", broker_url)


@pytest.fixture
def api(broker_url: str) -> Iterator[ModuleType]:
    yield from client_app("tests.apps.api", broker_url)


@pytest.fixture
def interop(broker_url: str) -> Iterator[ModuleType]:
    """tests/apps/interop.py as OUR client (Celery runs the same functions from celery_interop.py)."""
    yield from client_app("tests.apps.interop", broker_url)


@pytest.fixture
def start_worker(broker_url: str, tmp_path: Path, ledger: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """``start_worker("-c", "2", name="w1", env={...})`` → a ready worker process."""
    started: list[WorkerProcess] = []

    def start(
        *args: str,
        name: str | None = None,
        env: dict[str, str] | None = None,
        ready: bool = True,
        app: str = "tests.apps.shop",
    ) -> WorkerProcess:
        name = name or f"w{len(started) + 1}"
        extra = {"LEDGER": str(ledger), "TQ_WORKER_NAME": name, **(env or {})}
        argv = ["-n", f"{name}@%h", "-l", "info", *args]
        proc = WorkerProcess(broker_url, argv, tmp_path / f"{name}.log", extra, app=app)
        started.append(proc)
        return proc.wait_ready() if ready else proc

    yield start
    for proc in started:
        proc.close()


@pytest.fixture
def celery_processes(tmp_path: Path, ledger: Path) -> Iterator[Callable[..., CeleryWorkerProcess]]:
    """``start(app, queues, name, env)`` → a ready real Celery worker; all killed at the end."""
    started: list[CeleryWorkerProcess] = []

    def start(app: str, queues: str, name: str, env: dict[str, str]) -> CeleryWorkerProcess:
        worker = CeleryWorkerProcess(app, queues, name, tmp_path / f"{name}.log", {"LEDGER": str(ledger), **env})
        started.append(worker)
        return worker.wait_ready()

    yield start
    for worker in started:
        worker.close()


@pytest.fixture
def celery_prefork(broker_url: str, tmp_path: Path) -> Iterator[Callable[..., CeleryPrefork]]:
    """``start(name, *worker args)`` → a ready Celery prefork worker of tests/apps/remote_celery.py."""
    started: list[CeleryPrefork] = []

    def start(name: str, *args: str) -> CeleryPrefork:
        worker = CeleryPrefork(broker_url, name, tmp_path / f"{name}.log", *args)
        started.append(worker)
        return worker.wait_ready(60)

    yield start
    for worker in started:
        worker.close()


@pytest.fixture
def celery_app(broker_url: str) -> Iterator[Any]:
    """A plain Celery 5.7 client (Flower and ``celery inspect`` use exactly this)."""
    import celery

    app = celery.Celery("probe", broker=broker_url, backend=broker_url, set_as_current=False)
    app.conf.broker_connection_retry_on_startup = True
    yield app
    app.close()
