"""Fixtures for tests that run real worker processes against the session's real server."""

from __future__ import annotations

import importlib
import socket
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
def transport(request: pytest.FixtureRequest) -> str:
    """Which broker a test runs on: "redis" unless the test is marked ``amqp_too``, in which case
    ``pytest_generate_tests`` (tests/conftest.py) runs it once per transport."""
    return str(getattr(request, "param", "redis"))


@pytest.fixture
def broker_url(transport: str, redis_url: str, redis_client: redis.Redis, request: pytest.FixtureRequest) -> str:
    """The session server (emptied for this test by ``redis_client``), or on the AMQP run the
    session's private RabbitMQ with the tests' queues deleted. Results stay on Redis either way."""
    if transport == "amqp":
        return str(request.getfixturevalue("amqp_url"))
    return redis_url


@pytest.fixture
def backend_url(redis_url: str, redis_client: redis.Redis) -> str:
    """Where results, revokes and history live: the session's Redis on every transport."""
    return redis_url


@pytest.fixture
def transport_env(transport: str, backend_url: str) -> dict[str, str]:
    """What a worker or CLI process needs beyond ``TQCTL_BROKER``: on AMQP, the Redis backend."""
    return {"TQCTL_BACKEND": backend_url} if transport == "amqp" else {}


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.txt"
    path.touch()
    return path


def client_app(module_name: str, broker_url: str, backend_url: str | None = None) -> Iterator[ModuleType]:
    """A test app module as a client in this process, pointed at this test's server."""
    module = importlib.import_module(module_name)
    module.app.close()
    before = module.app.conf.broker_url, module.app.conf.result_backend
    module.app.conf.broker_url = broker_url
    module.app.conf.result_backend = backend_url or broker_url
    try:
        yield module
    finally:
        module.app.close()
        # The module stays imported for the process: later tests (another file, under xdist) see
        # its settings as the module left them, not as this test set them.
        module.app.conf.broker_url, module.app.conf.result_backend = before


@pytest.fixture
def shop(broker_url: str, backend_url: str) -> Iterator[ModuleType]:
    yield from client_app("tests.apps.shop", broker_url, backend_url)


@pytest.fixture
def canvas(broker_url: str, backend_url: str) -> Iterator[ModuleType]:
    yield from client_app("tests.apps.canvas", broker_url, backend_url)


@pytest.fixture
def rel(broker_url: str, backend_url: str) -> Iterator[ModuleType]:
    """tests/apps/reliability.py: ledger-writing tasks and a small message-size limit."""
    yield from client_app("tests.apps.reliability", broker_url, backend_url)


@pytest.fixture
def api(broker_url: str, backend_url: str) -> Iterator[ModuleType]:
    yield from client_app("tests.apps.api", broker_url, backend_url)


@pytest.fixture
def interop(broker_url: str, backend_url: str) -> Iterator[ModuleType]:
    """tests/apps/interop.py as OUR client (Celery runs the same functions from celery_interop.py)."""
    yield from client_app("tests.apps.interop", broker_url, backend_url)


@pytest.fixture
def start_worker(
    broker_url: str, transport_env: dict[str, str], tmp_path: Path, ledger: Path
) -> Iterator[Callable[..., WorkerProcess]]:
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
        extra = {"LEDGER": str(ledger), "TQ_WORKER_NAME": name, **transport_env, **(env or {})}
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
def celery_prefork(broker_url: str, backend_url: str, tmp_path: Path) -> Iterator[Callable[..., CeleryPrefork]]:
    """``start(name, *worker args)`` → a ready Celery prefork worker of tests/apps/remote_celery.py."""
    started: list[CeleryPrefork] = []

    def start(name: str, *args: str) -> CeleryPrefork:
        worker = CeleryPrefork(broker_url, name, tmp_path / f"{name}.log", *args, backend=backend_url)
        started.append(worker)
        return worker.wait_ready(60)

    yield start
    for worker in started:
        worker.close()


@pytest.fixture
def celery_app(broker_url: str, backend_url: str) -> Iterator[Any]:
    """A plain Celery 5.7 client (Flower and ``celery inspect`` use exactly this)."""
    import celery

    app = celery.Celery("probe", broker=broker_url, backend=backend_url, set_as_current=False)
    app.conf.broker_connection_retry_on_startup = True
    yield app
    app.close()


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port another program holds: bound and listening, never answering, for the whole
    test (the taken-port tests hand it to a harness or server as its first pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])
