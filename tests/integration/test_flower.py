"""Flower 2.2 (``celery -b URL flower``, a real Flower process) watching two of OUR workers.

What a user opens: the worker page (it indexes the ``inspect stats`` and ``active_queues`` replies
by key, so one missing key is an HTTP 500), ``/api/workers?refresh=1``, ``/api/task/info/<id>``
(built from the task events Flower received) and ``/api/queues/length`` (queue depths read from
the broker, for the queues the workers report).
"""

from __future__ import annotations

import html
import json
import os
import re
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import App
from tests.integration.harness import ROOT, ChildProcess, WorkerProcess, wait_for
from tests.integration.servers import ready_on_a_free_port

pytestmark = pytest.mark.integration
HOST = socket.gethostname()
O1, O2 = f"o1@{HOST}", f"o2@{HOST}"


def table_rows(page: str) -> dict[str, str]:
    """``<td>Name</td><td>Value</td>`` pairs of a Flower page, as the user reads them."""
    flat = re.sub(r"\s+", " ", html.unescape(page))
    return {k.strip(): v.strip() for k, v in re.findall(r"<td>([^<]*)</td> ?<td[^>]*>([^<]*)</td>", flat)}


class Flower(ChildProcess):
    ready_marker = "Visit me at"

    def __init__(self, url: str, port: int, log_path: Path) -> None:
        env = {**os.environ, "FLOWER_UNAUTHENTICATED_API": "true", "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", "celery", "-b", url, "flower", f"--port={port}", "--address=127.0.0.1"]
        super().__init__(argv, log_path, env)
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, timeout: float = 30.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, f"{path}: HTTP {status}\n{body[:2000]}\n{self.log()[-3000:]}"
        return json.loads(body)


@pytest.fixture
def flower(broker_url: str, tmp_path: Path) -> Iterator[Flower]:
    proc, _ = ready_on_a_free_port(lambda port: Flower(broker_url, port, tmp_path / f"flower-{port}.log"), 60)
    try:
        yield proc
    finally:
        proc.close()


def test_flower_shows_our_workers_their_pool_queues_tasks_and_queue_lengths(
    broker_url: str, start_worker: Callable[..., WorkerProcess], flower: Flower
) -> None:
    start_worker("-P", "prefork", "-c", "2", "-Q", "celery,high", name="o1", app="tests.apps.shop")
    start_worker("-P", "prefork", "--autoscale", "3,1", name="o2", app="tests.apps.shop")
    wait_for(lambda: {O1, O2} <= set(flower.json("/api/workers?status=1")), 30, "Flower to see both workers")

    workers = flower.json("/api/workers?refresh=1")
    assert {O1, O2} <= set(workers)
    assert [q["name"] for q in workers[O1]["active_queues"]] == ["celery", "high"]
    assert workers[O1]["active_queues"][0]["no_ack"] is False
    assert workers[O1]["stats"]["pool"]["max-concurrency"] == 2
    assert len(workers[O1]["stats"]["pool"]["processes"]) == 2
    assert workers[O2]["stats"]["autoscaler"]["max"] == 3
    assert "tests.apps.shop.add" in workers[O1]["registered"]

    for name, queues, size in ((O1, ("celery", "high"), 2), (O2, ("celery",), 1)):
        status, page = flower.get(f"/worker/{name}")
        assert status == 200, page[:3000] + flower.log()[-3000:]
        rows = table_rows(page)
        assert f'id="workername">{name}<' in page
        assert "Worker pool options" in page and rows["Implementation"] == "Prefork", rows
        assert rows["Max concurrency"] == str(size), rows
        assert all(f"<td>{q}</td>" in page for q in queues)  # the Queues tab
        assert rows["Transport"] == "redis" and rows["Virtual host"] == "/"  # the Broker tab
    rows = table_rows(flower.get(f"/worker/{O2}")[1])
    assert "Autoscaler options" in flower.get(f"/worker/{O2}")[1]  # shown only for Celery's autoscaler dict
    assert (rows["Max"], rows["Min"]) == ("3", "1"), rows

    client = App("client", broker=broker_url, backend=broker_url)
    try:
        done = client.send_task("tests.apps.shop.add", (20, 22))
        assert done.get(timeout=30) == 42
        for _ in range(3):
            client.send_task("tests.apps.shop.add", (1, 1), queue="nobody")
        client.send_task("tests.apps.shop.add", (2, 2), queue="high", countdown=600)  # held in the broker
    finally:
        client.close()

    def task_info() -> dict[str, Any] | None:
        status, body = flower.get(f"/api/task/info/{done.id}")
        info = json.loads(body) if status == 200 else None
        return info if info and info.get("state") == "SUCCESS" else None

    wait_for(task_info, 30, "Flower to record the task's events")
    info = task_info()
    assert info["name"] == "tests.apps.shop.add" and info["worker"] in (O1, O2)
    assert info["result"] == "42" and info["args"] == "(20, 22)"
    assert info["sent"] is None or info["sent"] <= info["started"] <= info["succeeded"]

    pages = {"/": O1, "/workers": O2, "/tasks": "Tasks", f"/task/{done.id}": "tests.apps.shop.add", "/broker": "high"}
    for path, shown in pages.items():  # the other pages a user opens
        status, page = flower.get(path)
        assert status == 200 and shown in page, f"{path}: HTTP {status}\n{page[:2000]}\n{flower.log()[-3000:]}"

    def lengths() -> dict[str, int]:
        return {q["name"]: q["messages"] for q in flower.json("/api/queues/length")["active_queues"]}

    # The queues our workers consume ("nobody" is no one's). The countdown task sits in "high" until
    # a worker fetches it and moves it to the broker's delayed set, so wait for that to happen.
    wait_for(lambda: lengths() == {"celery": 0, "high": 0}, 30, "the countdown task to leave 'high'")
