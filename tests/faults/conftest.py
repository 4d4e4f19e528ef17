"""Fixtures every fault experiment builds on: a private broker it may break, a separate counter store
it never touches, the counting app as a client, and real workers (``tests.integration.harness``).

``broker``/``counter`` are ``FaultServer``s (stop, freeze, kill, restart on the same address);
``make_server("backend")`` makes more (a result store on its own server). A module whose experiment
needs the broker on TCP (a proxy in front of it, a password in its URL) overrides ``broker`` with
``make_server("broker", tcp=True)``. Where each task ended up is asked of ``tests.faults.harness``
(``wait_settled``, ``judge``); the proxy and the process helpers live in ``proxy.py`` and ``procs.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.faults.harness import FaultServer
from tests.faults.procs import kill_group
from tests.integration.harness import WorkerProcess

APP = "tests.apps.faults"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every fault experiment runs real servers and workers: marked ``integration`` like that suite."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def make_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., FaultServer]]:
    """``make_server("backend", tcp=False)`` → a started ``FaultServer``; every one killed at the end."""
    started: list[FaultServer] = []

    def make(name: str = "server", tcp: bool = False) -> FaultServer:
        server = FaultServer(tmp_path_factory.mktemp(f"fault-{name}"), tcp=tcp)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.kill()


@pytest.fixture
def broker(make_server: Callable[..., FaultServer]) -> FaultServer:
    """This experiment's broker (and its result store, unless the test names another)."""
    return make_server("broker")


@pytest.fixture
def counter(make_server: Callable[..., FaultServer]) -> FaultServer:
    """Where ``tests.apps.faults`` counts each run per task id; never part of a fault."""
    return make_server("counter")


@pytest.fixture
def broker_url(broker: FaultServer) -> str:
    return broker.url


@pytest.fixture
def counter_url(counter: FaultServer) -> str:
    return counter.url


@pytest.fixture
def faults(broker_url: str, counter_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``tests.apps.faults`` as a client in this process, on this experiment's broker (results there too;
    set ``faults.app.conf.result_backend`` to use another server)."""
    import tests.apps.faults as module

    monkeypatch.setenv("FAULT_COUNTER_URL", counter_url)
    module.app.close()
    module.app.conf.broker_url = broker_url
    module.app.conf.result_backend = broker_url
    module._counter = None
    yield module
    module.app.close()
    module._counter = None


@pytest.fixture
def start_worker(broker_url: str, counter_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """``start_worker("-c", "2", "-P", "threads", name="w1", app=..., env={...}, ready=True)`` → a worker on
    this experiment's broker (``url=`` another address for it, e.g. a proxy's) counting runs in the counter
    store (``--backend URL`` puts results elsewhere); each is killed with its whole process group at the
    end, even one whose leader is already gone (the children it left behind)."""
    started: list[WorkerProcess] = []

    def start(
        *args: str,
        name: str | None = None,
        app: str = APP,
        env: dict[str, str] | None = None,
        ready: bool = True,
        url: str | None = None,
    ) -> WorkerProcess:
        name = name or f"w{len(started) + 1}"
        extra = {"FAULT_COUNTER_URL": counter_url, **(env or {})}
        argv = ["-n", f"{name}@%h", "-l", "info", *args]
        proc = WorkerProcess(url or broker_url, argv, tmp_path / f"{name}.log", extra, app=app)
        started.append(proc)
        return proc.wait_ready(30.0) if ready else proc

    yield start
    for proc in started:
        proc.close()
        kill_group(proc.pid)
