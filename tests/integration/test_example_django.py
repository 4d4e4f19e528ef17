"""examples/django run for real: ``manage.py runserver``, a ``tqctl worker`` on the project, sqlite.

A view saves an order and calls ``ship_order.delay_on_commit`` inside ``transaction.atomic()``;
the worker (prefork, so the fork fix-up runs too) ships it. A rolled-back order sends nothing:
a sentinel order placed after it is shipped by the same single-process worker, which takes
messages in order, and only then are the shipments counted.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import App
from tests.integration.harness import ROOT, ChildProcess, WorkerProcess, wait_for
from tests.integration.servers import ready_on_a_free_port

pytest.importorskip("django")

PROJECT = ROOT / "examples" / "django"


class RunServer(ChildProcess):
    ready_marker = "Starting development server"


@pytest.fixture
def django_env(broker_url: str, tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "proj.settings",
        "SHOP_DB": str(tmp_path / "shop.sqlite3"),
        "PYTHONPATH": os.pathsep.join([str(PROJECT), str(ROOT)]),
        "PYTHONUNBUFFERED": "1",
        "TQCTL_BROKER": broker_url,
    }
    env.pop("TQCTL_BACKEND", None)
    subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), "migrate", "--noinput", "-v", "0"],
        env=env,
        check=True,
        timeout=120,
    )
    return env


@pytest.fixture
def worker_app() -> str:
    """What the worker loads: ``-A proj``, as the example's README runs it (Celery's layout: the
    app is found in ``proj.celery``); a test may parametrize it with the probe module instead."""
    return "proj"


@pytest.fixture
def site(django_env: dict[str, str], broker_url: str, tmp_path: Path, worker_app: str) -> Iterator[str]:
    """The example project under runserver and a prefork worker of one child; yields the base URL."""
    worker = WorkerProcess(
        broker_url,
        ["-P", "prefork", "-c", "1", "-n", "django@%h", "-l", "info"],
        tmp_path / "worker.log",
        django_env,
        app=worker_app,
    )

    def runserver(port: int) -> RunServer:
        argv = [sys.executable, str(PROJECT / "manage.py"), "runserver", f"127.0.0.1:{port}", "--noreload"]
        return RunServer(argv, tmp_path / f"runserver-{port}.log", django_env)

    try:
        worker.wait_ready(60)
        server, port = ready_on_a_free_port(runserver, 60)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.close()
    finally:
        worker.close()


def call(url: str, data: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with urllib.request.urlopen(url, data=body, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def place(site: str, reference: str, item: str = "book") -> tuple[int, dict[str, Any]]:
    return call(f"{site}/orders/", {"reference": reference, "item": item})


def wait_shipped(site: str, order_id: int) -> None:
    wait_for(lambda: call(f"{site}/orders/{order_id}/")[1]["status"] == "shipped", 60, f"order {order_id} shipped")


def shipments(db: str) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT reference FROM shop_shipment ORDER BY id")]


def test_view_enqueues_on_commit_and_worker_updates_the_model(site: str, django_env: dict[str, str]) -> None:
    status, order = place(site, "first")
    assert status == 201
    wait_shipped(site, order["id"])

    status, refused = place(site, "rolled-back", item="unicorn")
    assert (status, refused) == (409, {"error": "no unicorns left"})
    status, sentinel = place(site, "sentinel")
    assert status == 201
    wait_shipped(site, sentinel["id"])  # one worker process, messages in order: anything sent before is done

    assert shipments(django_env["SHOP_DB"]) == ["first", "sentinel"]


@pytest.mark.parametrize("worker_app", ["tests.apps.django_probe"])  # proj plus one probe task
def test_worker_closes_database_connections_between_tasks(site: str, broker_url: str) -> None:
    status, order = place(site, "opens-a-connection")
    assert status == 201
    wait_shipped(site, order["id"])  # ship_order queried sqlite in the pool's only child
    client = App("probe", broker=broker_url, backend=broker_url)
    try:
        result = client.send_task("tests.apps.django_probe.connection_was_closed")
        assert result.get(timeout=30) is True
    finally:
        client.close()
