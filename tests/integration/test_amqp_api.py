"""RabbitMQ's management API names the queues AMQP cannot: one nobody consumes shows in
``tqctl queues`` and the console, plumbing queues do not, and a bad API login is one warning.

A node of its own with the management plugin (slower to start than the session's plain one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import App
from tests.bench.amqp_reference import connect
from tests.integration.harness import ROOT
from tests.integration.rabbitmq import RabbitMQ, available
from tests.tui.conftest import drive, live_app, press, wait_for
from tqctl.tui.probe import Probe
from tqctl.tui.screens.queues import QueuesScreen

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def managed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    if not available():
        pytest.skip("Debian's rabbitmq-server is not installed")
    node = RabbitMQ(tmp_path_factory.mktemp("rabbitmq-managed"), management=True).start(timeout=120)
    try:
        yield node
    finally:
        node.close()


@pytest.fixture(scope="module")
def orphan(managed: RabbitMQ) -> str:
    """A task sent to a queue no worker consumes (the client declares it as it sends), beside
    the plumbing an events receiver and a worker's remote control would declare."""
    conn = connect(managed.url)
    try:
        channel = conn.channel()
        for plumbing in ("celeryev.3f1c-receiver", "w1@host.celery.pidbox", "celery_delayed_27"):
            channel.queue_declare(plumbing, durable=False, auto_delete=False)
    finally:
        conn.close()
    app = App("orphans", broker=managed.url)
    app.conf.task_send_sent_event = False
    try:
        app.send_task("nobody.runs.this", args=[1], queue="orphaned")
    finally:
        app.close()
    return "orphaned"


def queues(node: RabbitMQ, api: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TQCTL_BROKER": node.url, "TQCTL_BROKER_API": api, "PYTHONPATH": str(ROOT)}
    env.pop("TQCTL_BACKEND", None)
    argv = [sys.executable, "-m", "tqctl", "queues", "--json", "--timeout", "0.5"]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_tqctl_queues_lists_a_queue_nobody_consumes_and_no_plumbing(managed: RabbitMQ, orphan: str) -> None:
    run = queues(managed, managed.api_url)  # no login in it: the broker URL's is used
    assert run.returncode == 0, run.stderr
    rows = {r["name"]: r for r in json.loads(run.stdout)["queues"]}
    assert rows[orphan]["depth"] == 1 and rows[orphan]["consumer_count"] == 0
    assert f"queue {orphan!r} has 1 message(s) but no consumer" in run.stderr
    # events, remote control and delay levels are not task queues
    assert set(rows) == {"celery", orphan}, sorted(rows)


def test_without_the_api_the_queue_stays_unknown(managed: RabbitMQ, orphan: str) -> None:
    """What the API adds: without it, AMQP alone cannot name the queue."""
    env = {**os.environ, "TQCTL_BROKER": managed.url, "PYTHONPATH": str(ROOT)}
    env.pop("TQCTL_BROKER_API", None)
    env.pop("TQCTL_BACKEND", None)
    argv = [sys.executable, "-m", "tqctl", "queues", "--json", "--timeout", "0.5"]
    run = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert [r["name"] for r in json.loads(run.stdout)["queues"]] == ["celery"]


def test_a_wrong_api_login_is_one_warning_and_the_rest_still_shows(managed: RabbitMQ, orphan: str) -> None:
    api = managed.api_url.replace("http://", "http://guest:s3cret-wrong@")
    run = queues(managed, api)
    assert run.returncode == 0, run.stderr
    assert [r["name"] for r in json.loads(run.stdout)["queues"]] == ["celery"]
    problems = [line for line in run.stderr.splitlines() if "management API" in line]
    assert len(problems) == 1 and "refused the login" in problems[0], run.stderr
    assert "s3cret-wrong" not in run.stdout + run.stderr and "Traceback" not in run.stderr


def test_the_console_probe_shows_it_from_its_first_full_poll(
    managed: RabbitMQ, orphan: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TQCTL_BROKER_API", managed.api_url)
    probe = Probe(managed.url, inspect_timeout=0.3)
    try:
        snapshot: Any = probe.snapshot(slow=True)
    finally:
        probe.close()
    depths = {q.name: q.depth for q in snapshot.queues}
    assert depths.get(orphan) == 1, depths


def test_the_console_says_when_the_api_refuses_its_login(
    managed: RabbitMQ, orphan: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The Queues screen does not look complete when the listing failed: its status says why."""
    monkeypatch.setenv("TQCTL_BROKER_API", managed.api_url.replace("http://", "http://guest:s3cret-wrong@"))
    monkeypatch.delenv("TQCTL_BACKEND", raising=False)
    app = live_app(managed.url, tmp_path)

    async def scenario(pilot: Any) -> None:
        await press(pilot, "3")
        screen = app.screen
        assert isinstance(screen, QueuesScreen)
        status = lambda: str(screen.query_one("#status").render())  # noqa: E731
        await wait_for(pilot, lambda: "refused the login" in status(), "the listing's failure", show=status)
        assert "s3cret-wrong" not in status()
        assert screen.table.row_keys == ["celery"]

    drive(app, scenario)


def test_queues_json_carries_the_listings_failure(managed: RabbitMQ, orphan: str) -> None:
    """A management API that refused the login was a warning on stderr alone: the --json document
    said "warnings": [] and looked complete."""
    run = queues(managed, managed.api_url.replace("http://", "http://guest:s3cret-wrong@"))
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert any("refused the login" in w for w in doc["warnings"]), doc["warnings"]
    assert "s3cret-wrong" not in run.stdout + run.stderr
    assert run.stderr.count("refused the login") == 1  # said once
