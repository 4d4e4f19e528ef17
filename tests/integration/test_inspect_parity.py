"""What real Celery tools see of our workers, compared with what a REAL Celery 5.7 worker replies.

Each test starts a Celery prefork worker (``celery -A tests.apps.remote_celery worker``) beside
ours (``tqctl worker -A tests.apps.remote_commands``) on the session's server, asks both the same
thing with Celery's own client or CLI, and compares: the keys of ``inspect stats`` and
``inspect active_queues`` (Flower reads them by key), who lists an ETA task, the events' times,
the name a retry's traceback gives, and custom remote-control commands.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.harness import ROOT, WorkerProcess, wait_for

pytestmark = pytest.mark.integration
HOST = socket.gethostname()
OURS = "tests.apps.remote_commands"


def node(name: str) -> str:
    return f"{name}@{HOST}"


def inspect(app: Any, method: str, names: list[str], **arguments: Any) -> dict[str, Any]:
    """Celery's ``inspect().<method>()`` until every named worker has answered."""
    found: dict[str, Any] = {}

    def ask() -> bool:
        replies = app.control.inspect(timeout=2.0, destination=names)._request(method, **arguments) or {}
        found.update(replies)
        return all(n in found for n in names)

    wait_for(ask, 30, f"{method} replies from {names}")
    return found


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REMOTE_BROKER": url, "TQCTL_BROKER": url, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def key_shape(value: Any) -> Any:
    """The nested key structure of a reply, values left out."""
    if isinstance(value, dict):
        return {k: key_shape(v) for k, v in value.items()}
    return type(value).__name__ if isinstance(value, (list, tuple)) else None


# -- inspect stats / active_queues -------------------------------------------------------------------
def test_stats_and_active_queues_have_every_key_a_celery_worker_sends(
    celery_prefork: Any, start_worker: Callable[..., WorkerProcess], celery_app: Any
) -> None:
    celery_prefork("c1", "--autoscale", "3,1", "-Q", "celery,high")
    start_worker("-P", "prefork", "--autoscale", "3,1", "-Q", "celery,high", name="o1", app=OURS)
    names = [node("c1"), node("o1")]

    queues = inspect(celery_app, "active_queues", names)
    theirs, ours = queues[node("c1")], queues[node("o1")]
    assert [q["name"] for q in ours] == [q["name"] for q in theirs] == ["celery", "high"]
    assert ours == theirs  # kombu's Queue.as_dict(recurse=True), value for value: no_ack, exchange, bindings...

    stats = inspect(celery_app, "stats", names)
    theirs, ours = stats[node("c1")], stats[node("o1")]
    assert set(ours) == set(theirs), (sorted(ours), sorted(theirs))
    for part in ("broker", "rusage", "autoscaler"):
        assert set(ours[part]) == set(theirs[part]), part
    assert set(ours["pool"]) - {"autoscale"} == set(theirs["pool"])
    assert key_shape(ours["pool"]["writes"]) == key_shape(theirs["pool"]["writes"])
    assert "password" not in ours["broker"]
    # values a user reads on Flower's worker page mean the same thing
    for key in ("virtual_host", "port", "transport", "ssl", "connect_timeout", "heartbeat", "uri_prefix"):
        assert ours["broker"][key] == theirs["broker"][key], key
    assert ours["autoscaler"]["max"] == theirs["autoscaler"]["max"] == 3
    assert ours["autoscaler"]["min"] == theirs["autoscaler"]["min"] == 1
    assert ours["pool"]["max-concurrency"] == theirs["pool"]["max-concurrency"] == 1  # Celery's pool limit
    # Both start at MIN and fetch for MAX (ours started at the CPU count and fetched for it)
    assert len(ours["pool"]["processes"]) == len(theirs["pool"]["processes"]) == 1
    assert ours["prefetch_count"] == theirs["prefetch_count"] == 3 * 4
    assert ours["pool"]["max-tasks-per-child"] == theirs["pool"]["max-tasks-per-child"] == "N/A"
    assert ours["pool"]["timeouts"] == theirs["pool"]["timeouts"] == [0, 0]
    assert ours["pid"] != theirs["pid"] and isinstance(ours["uptime"], int) and ours["clock"].isdigit()
    assert all(isinstance(ours["rusage"][k], (int, float)) for k in ours["rusage"])

    registered = inspect(celery_app, "registered", names)  # builtins (celery.*) left out, as Celery does
    assert registered[node("o1")] == registered[node("c1")] == ["remote.add [rate_limit=50/s]", "remote.retry_later"]
    for alias, method in (("dump_tasks", "registered"), ("dump_active", "active"), ("dump_conf", "conf")):
        assert inspect(celery_app, alias, [node("o1")]) == inspect(celery_app, method, [node("o1")])
    everything = inspect(celery_app, "conf", [node("o1")], with_defaults=True)[node("o1")]
    assert everything["task_default_queue"] == "celery"
    theirs_all = inspect(celery_app, "conf", [node("c1")], with_defaults=True)[node("c1")]
    assert everything["result_expires"] == theirs_all["result_expires"] == "1 day, 0:00:00"  # a timedelta's text


def test_max_concurrency_is_the_configured_size_after_pool_grow(
    celery_prefork: Any, start_worker: Callable[..., WorkerProcess], celery_app: Any
) -> None:
    celery_prefork("c1", "-c", "2")
    start_worker("-P", "prefork", "-c", "2", name="o1", app=OURS)
    names = [node("c1"), node("o1")]
    assert all("grow" in r[n]["ok"] for r in celery_app.control.pool_grow(1, reply=True, destination=names) for n in r)

    def grown() -> dict[str, Any]:
        stats = celery_app.control.inspect(timeout=2.0, destination=names).stats() or {}
        return stats if all(len(stats.get(n, {}).get("pool", {}).get("processes", [])) == 3 for n in names) else {}

    wait_for(grown, 30, "both pools at 3 processes")
    stats = grown()
    assert [stats[n]["pool"]["max-concurrency"] for n in names] == [2, 2]


# -- inspect scheduled ---------------------------------------------------------------------------------
def test_an_eta_task_is_listed_once_not_once_per_worker(
    celery_prefork: Any, start_worker: Callable[..., WorkerProcess], celery_app: Any, broker_url: str
) -> None:
    celery_prefork("c1", "-c", "1", "-Q", "theirs")
    start_worker("-P", "threads", "-c", "1", name="o1", app=OURS)
    start_worker("-P", "threads", "-c", "1", name="o2", app=OURS)
    names = [node("c1"), node("o1"), node("o2")]
    held_by_celery = celery_app.send_task("remote.add", (1, 2), countdown=300, queue="theirs").id
    in_broker = celery_app.send_task("remote.add", (3, 4), countdown=300, queue="celery").id
    sentinel = celery_app.send_task("remote.add", (5, 6), queue="celery")
    assert sentinel.get(timeout=30) == 11  # our workers took what was queued before it

    def listed() -> dict[str, list[str]]:
        replies = inspect(celery_app, "scheduled", names)
        return {n: [item["request"]["id"] for item in replies[n]] for n in names}

    wait_for(lambda: listed()[node("c1")] == [held_by_celery], 30, "Celery to hold its ETA task")
    ids = listed()
    assert ids == {node("c1"): [held_by_celery], node("o1"): [], node("o2"): []}  # each task at most once

    doc = json.loads(cli(broker_url, "tqctl", "inspect", "scheduled", "--json").stdout)
    held = {n["name"]: [s["request"]["id"] for s in n["reply"]] for n in doc["nodes"]}
    assert held == ids
    assert [t["id"] for t in doc["broker"]["delayed"]] == [in_broker] and doc["broker"]["count"] == 1
    assert doc["broker"]["delayed"][0]["queue"] == "celery"
    human = cli(broker_url, "tqctl", "inspect", "scheduled").stdout
    assert human.count(in_broker) == 1 and human.count(held_by_celery) == 1


# -- custom remote-control commands ---------------------------------------------------------------
def test_custom_commands_answer_celerys_cli_and_ours_like_a_celery_worker(
    celery_prefork: Any, start_worker: Callable[..., WorkerProcess], celery_app: Any, broker_url: str
) -> None:
    celery_prefork("c1", "-c", "1")
    start_worker("-P", "threads", "-c", "1", name="o1", app=OURS)
    names = [node("c1"), node("o1")]

    replies = inspect(celery_app, "echo", names, word="hi", n=2)
    assert replies == {node("c1"): {"ok": f"{node('c1')}: hi hi"}, node("o1"): {"ok": f"{node('o1')}: hi hi"}}

    for name in names:  # Celery's own CLI maps the positional words with the command's args=
        done = cli(
            broker_url, "celery", "-A", "tests.apps.remote_celery", "inspect", "echo", "yo", "3", "-d", name, "--json"
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {name: {"ok": f"{name}: yo yo yo"}}
        done = cli(
            broker_url, "celery", "-A", "tests.apps.remote_celery", "inspect", "args_of", "a", "b", "-d", name, "--json"
        )
        assert json.loads(done.stdout) == {name: {"ok": [["words", ["a", "b"]]]}}, done.stderr

    done = cli(
        broker_url,
        "celery",
        "-A",
        "tests.apps.remote_celery",
        "control",
        "consume_too",
        "extra",
        "-d",
        node("o1"),
        "--json",
    )
    assert json.loads(done.stdout or "null") == [{node("o1"): {"ok": "consuming extra too"}}], done.stderr
    assert [q["name"] for q in inspect(celery_app, "active_queues", [node("o1")])[node("o1")]] == ["celery", "extra"]

    # tqctl: the same commands, KEY=VALUE arguments
    doc = json.loads(cli(broker_url, "tqctl", "inspect", "echo", "word=hey", "n=2", "-d", node("o1"), "--json").stdout)
    assert doc["nodes"] == [{"name": node("o1"), "ok": True, "reply": {"ok": f"{node('o1')}: hey hey"}, "error": None}]
    doc = json.loads(
        cli(broker_url, "tqctl", "control", "consume_too", "queue=more", "-d", node("o1"), "--json").stdout
    )
    assert doc["nodes"][0]["reply"] == {"ok": "consuming more too"}
    unknown = cli(broker_url, "tqctl", "inspect", "no_such_command", "-d", node("o1"), "--json")
    # Every worker answered KeyError: a usage error naming the commands there are, not a reply document.
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    assert "unknown inspect command 'no-such-command'" in unknown.stderr and "query-task" in unknown.stderr
    broken = cli(broker_url, "tqctl", "inspect", "not_json", "-d", node("o1"), "--json")
    assert broken.returncode == 1 and "reply is not JSON" in broken.stdout, broken.stdout + broken.stderr

    # the builtins still answer
    assert "remote.add [rate_limit=50/s]" in inspect(celery_app, "registered", [node("o1")])[node("o1")]
    assert inspect(celery_app, "stats", [node("o1")])[node("o1")]["pool"]["implementation"] == "threads"
    assert celery_app.control.ping(destination=[node("o1")], timeout=2.0) == [{node("o1"): {"ok": "pong"}}]
