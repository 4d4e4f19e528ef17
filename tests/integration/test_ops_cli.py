"""The scripted ops commands, run as real CLI processes against real workers on the session server.

Each test runs ``python -m tqctl ...`` with ``TQCTL_BROKER`` set, parses its ``--json`` output and
checks its exit code; workers are real processes (``start_worker``), one Celery 5 worker included.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from engine import App
from engine.broker.amqp import open_connection
from engine.history import History
from engine.protocol.task import priority_key
from tests.integration.harness import ROOT, wait_for

# Every test here runs on Redis and on RabbitMQ (results, history and revokes on the Redis backend).
pytestmark = [pytest.mark.integration, pytest.mark.amqp_too]
HOST = socket.gethostname()


def node(name: str) -> str:
    return f"{name}@{HOST}"


def tq(url: str, *args: str, stdin: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TQCTL_BROKER": url, "PYTHONPATH": str(ROOT)}  # TQCTL_BACKEND: ``cli_env``
    return subprocess.run(
        [sys.executable, "-m", "tqctl", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin if stdin is not None else "",
    )


def tq_json(url: str, *args: str, code: int = 0, **kw: Any) -> Any:
    proc = tq(url, *args, "--json", **kw)
    assert proc.returncode == code, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return json.loads(proc.stdout)


def ledger_lines(ledger: Path, word: str) -> list[str]:
    return [line for line in ledger.read_text().splitlines() if line.startswith(word + " ")]


def live_children(worker: Any) -> list[int]:
    """What ``pgrep -P worker_pid`` lists, minus zombies: the prefork pool can leave a retired child unreaped
    for a while (it reads the exit status once, possibly before the child is a zombie), and an exited child
    is not a pool process any more."""
    out = subprocess.run(["ps", "-o", "pid=,stat=", "--ppid", str(worker.pid)], capture_output=True, text=True)
    rows = [line.split() for line in out.stdout.splitlines() if line.strip()]
    return [int(pid) for pid, stat in rows if not stat.startswith("Z")]


@pytest.fixture(autouse=True)
def cli_env(transport_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every CLI process a test starts inherits this: TQCTL_BACKEND on AMQP, none on Redis."""
    monkeypatch.delenv("TQCTL_BACKEND", raising=False)
    for key, value in transport_env.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def client(broker_url: str, backend_url: str) -> Iterator[App]:
    """A client app on this test's server; closed after, with its task-sent flusher thread."""
    app = App("client", broker=broker_url, backend=backend_url)
    yield app
    app.close()


# -- status / inspect ------------------------------------------------------------------------------
def test_status_exit_69_without_workers_then_lists_each_worker(broker_url: str, start_worker) -> None:
    proc = tq(broker_url, "status", "--json")
    assert proc.returncode == 69
    assert json.loads(proc.stdout) == {"nodes": [], "count": 0}
    assert len(proc.stderr.strip().splitlines()) == 1 and "no nodes replied" in proc.stderr

    start_worker("-P", "threads", name="w1")
    start_worker("-P", "threads", name="w2")
    doc = tq_json(broker_url, "status")
    assert doc["count"] == 2 and {n["name"] for n in doc["nodes"]} == {node("w1"), node("w2")}
    assert all(n["ok"] and n["reply"] == {"ok": "pong"} for n in doc["nodes"])
    human = tq(broker_url, "status")
    assert human.returncode == 0
    assert f"{node('w1')}: OK" in human.stdout and "2 nodes online." in human.stdout
    for verb, known in (("inspect", "active, reserved"), ("control", "pool-grow, pool-shrink")):
        bogus = tq(broker_url, verb, "bogus", "--json")  # both workers answer KeyError('bogus'), as Celery's do
        assert bogus.returncode == 2 and bogus.stdout == "", bogus.stderr  # (it was exit 1: ERROR KeyError('bogus'))
        assert bogus.stderr.count("\n") == 1 and f"unknown {verb} command 'bogus': use {known}" in bogus.stderr


def test_inspect_methods_answer_with_what_the_worker_holds(
    broker_url: str, transport: str, shop, start_worker, ledger
) -> None:
    start_worker("-c", "1", name="w1")
    dest = ("-d", node("w1"))
    running = shop.slow_early.delay(60, "inspect")  # still running through every CLI call on a loaded machine
    waiting = shop.add.delay(1, 1)
    later = shop.add.apply_async((2, 2), countdown=60)
    wait_for(lambda: ledger_lines(ledger, "start"), 10, "the slow task to start")

    def replies(method: str, *args: str) -> Any:
        doc = tq_json(broker_url, "inspect", method, *args, *dest)
        assert doc["method"] == method.replace("-", "_") and doc["count"] == 1
        return doc["nodes"][0]["reply"]

    assert [t["id"] for t in replies("active")] == [running.id]
    assert replies("query-task", running.id)[running.id][0] == "active"
    # (the worker takes the second message when it next fetches: on a loaded machine, not at once)
    wait_for(lambda: waiting.id in [t["id"] for t in replies("reserved")], 30, "the waiting task to be reserved")
    assert replies("scheduled") == []  # a worker lists only ETA tasks it holds; ours wait in the broker
    if transport == "redis":  # RabbitMQ keeps it in its delay queues, which nobody can list
        held = tq_json(broker_url, "inspect", "scheduled", *dest)["broker"]
        assert [t["id"] for t in held["delayed"]] == [later.id] and held["count"] == 1
    assert "tests.apps.shop.add" in replies("registered")
    stats = replies("stats")
    assert stats["pool"]["max-concurrency"] == 1 and len(stats["pool"]["processes"]) == 1
    assert [q["name"] for q in replies("active-queues")] == ["celery"]
    assert isinstance(replies("conf"), dict)
    shop.app.control.revoke(later.id)
    assert later.id in replies("revoked")


# -- control -----------------------------------------------------------------------------------------
def test_pool_grow_and_shrink_change_the_real_child_processes(broker_url: str, start_worker) -> None:
    worker = start_worker("-c", "2", name="w1")
    wait_for(lambda: len(live_children(worker)) == 2, 10, "2 children")
    doc = tq_json(broker_url, "control", "pool_grow", "2", "-d", node("w1"))
    assert doc["nodes"] == [{"name": node("w1"), "ok": True, "reply": {"ok": "pool will grow"}, "error": None}]
    wait_for(lambda: len(live_children(worker)) == 4, 10, "4 children after pool_grow 2")
    tq_json(broker_url, "control", "pool-shrink", "1", "-d", node("w1"))
    wait_for(lambda: len(live_children(worker)) == 3, 10, "3 children after pool-shrink 1")
    stats = tq_json(broker_url, "inspect", "stats", "-d", node("w1"))["nodes"][0]["reply"]
    assert stats["pool"]["max-concurrency"] == 2 and len(stats["pool"]["processes"]) == 3  # as Celery: -c stays


def test_autoscale_grows_with_queued_load_and_shrinks_back_when_idle(broker_url: str, shop, start_worker) -> None:
    worker = start_worker("-c", "1", "--autoscale", "4,1", name="w1")
    assert len(live_children(worker)) == 1
    results = [shop.slow_early.delay(2.0, f"load{i}") for i in range(16)]  # 32 s of work for one child
    wait_for(lambda: len(live_children(worker)) == 4, 20, "the pool to grow to 4 under load")
    for result in results:
        result.get(timeout=60)
    wait_for(lambda: len(live_children(worker)) == 1, 30, "the pool to shrink back to 1 when idle")
    refused = tq_json(broker_url, "control", "pool_grow", "1", "-d", node("w1"), code=1)
    assert "autoscale" in refused["nodes"][0]["error"]
    doc = tq_json(broker_url, "control", "autoscale", "3", "1", "-d", node("w1"))
    assert doc["arguments"] == {"max": 3, "min": 1} and doc["nodes"][0]["ok"]
    # The prefetch window is sized for MAX (4 a process), at start and after a new MAX, as Celery's.
    stats = tq_json(broker_url, "inspect", "stats", "-d", node("w1"))["nodes"][0]["reply"]
    assert stats["prefetch_count"] == 3 * 4


def test_control_commands_change_the_running_worker(broker_url: str, shop, start_worker) -> None:
    start_worker("-c", "1", "-P", "threads", name="w1")
    dest = ("-d", node("w1"))
    for args in (
        ("rate_limit", "tests.apps.shop.add", "10/s"),
        ("time-limit", "tests.apps.shop.add", "10", "5"),
        ("enable_events",),
        ("disable-events",),
        ("enable-events",),
        ("heartbeat",),
    ):
        doc = tq_json(broker_url, "control", *args, *dest)
        assert doc["count"] == 1 and doc["nodes"][0]["ok"], doc
    tq_json(broker_url, "control", "add_consumer", "extra", *dest)
    queues = tq_json(broker_url, "inspect", "active_queues", *dest)["nodes"][0]["reply"]
    assert {q["name"] for q in queues} == {"celery", "extra"}
    assert shop.add.apply_async((1, 2), queue="extra").get(timeout=10) == 3
    tq_json(broker_url, "control", "cancel-consumer", "extra", *dest)
    queues = tq_json(broker_url, "inspect", "active_queues", *dest)["nodes"][0]["reply"]
    assert [q["name"] for q in queues] == ["celery"]
    unknown = tq_json(broker_url, "control", "rate_limit", "no.such.task", "1/s", *dest, code=1)
    assert "unknown task" in unknown["nodes"][0]["error"]
    restart = tq_json(broker_url, "control", "pool-restart", *dest, code=1)  # as Celery without worker_pool_restarts
    assert "Pool restarts not enabled" in restart["nodes"][0]["error"]


def test_drain_finishes_what_it_holds_and_leaves_the_rest_queued(broker_url: str, shop, start_worker, ledger) -> None:
    worker = start_worker("-c", "2", name="w1")
    sent = [
        shop.slow_late.delay(0.5, f"d{i}").id for i in range(60)
    ]  # 15 s of work: more than a loaded machine takes to drain
    wait_for(lambda: len(ledger_lines(ledger, "start")) >= 2, 10, "two tasks to start")
    doc = tq_json(broker_url, "control", "drain", "30", "--yes", "-d", node("w1"))
    assert doc["nodes"][0]["ok"] and "draining" in doc["nodes"][0]["reply"]["ok"]
    assert worker.wait(30) == 0
    started = [line.split()[2] for line in ledger_lines(ledger, "start")]
    ended = [line.split()[2] for line in ledger_lines(ledger, "end")]
    assert sorted(started) == sorted(ended), "a task was cut off mid-run"
    assert len(set(ended)) == len(ended), "a task ran twice"
    queued = shop.app.broker.queue_depth("celery")
    # Every unfinished task is back on the queue: none was left in flight with the stopped worker.
    assert len(ended) + queued == len(sent), f"{len(ended)} done + {queued} queued != {len(sent)}"
    assert queued > 0, "drain should stop consuming, leaving work queued"


def test_allow_list_refuses_shutdown_and_the_worker_keeps_running(broker_url: str, start_worker) -> None:
    guarded = start_worker("-P", "threads", name="g1", app="tests.apps.guarded")
    plain = start_worker("-P", "threads", name="w1")
    dry = tq_json(broker_url, "control", "shutdown", "--dry-run", "-d", node("w1"))
    assert dry == {"command": "shutdown", "arguments": {}, "dry_run": True, "nodes": [node("w1")]}
    asked = tq(broker_url, "control", "shutdown", "-d", node("w1"))  # no --yes, no terminal: aborts
    assert asked.returncode == 1 and "aborted" in asked.stderr
    conf = tq(broker_url, "inspect", "conf", "-d", node("g1"), "--json")  # allowed, and secrets are masked
    assert conf.returncode == 0 and "hunter2" not in conf.stdout
    reply = json.loads(conf.stdout)["nodes"][0]["reply"]
    assert reply["api_token"] == "********"
    # a crontab and a timedelta in beat_schedule made the whole reply fail ("reply is not JSON")
    assert reply["beat_schedule"]["nightly"]["schedule"] == "crontab(minute='0', hour='3')"
    assert reply["beat_schedule"]["every-ten"]["schedule"] == "0:00:10"  # a timedelta's text, as Celery's
    refused = tq_json(broker_url, "inspect", "active", "-d", node("g1"), code=1)  # not on the allow-list
    assert "not allowed" in refused["nodes"][0]["error"]
    doc = tq_json(broker_url, "control", "shutdown", "--yes", "-d", node("g1"), code=1)
    assert doc["nodes"][0]["ok"] is False and "not allowed" in doc["nodes"][0]["error"]
    # a sentinel: g1 answers a later command, so it handled the refused shutdown and lives on
    assert tq(broker_url, "status", "-d", node("g1")).returncode == 0
    assert guarded.proc.poll() is None and plain.proc.poll() is None
    doc = tq_json(broker_url, "control", "shutdown", "--yes", "-d", node("w1"))
    assert doc["nodes"] == [{"name": node("w1"), "ok": True, "reply": {"ok": "shutdown requested"}, "error": None}]
    assert plain.wait(15) == 0
    assert guarded.proc.poll() is None


# -- revoke ------------------------------------------------------------------------------------------
def test_revoked_queued_task_never_runs(broker_url: str, transport: str, shop, start_worker, ledger) -> None:
    start_worker("-c", "1", "-P", "threads", name="w1")
    victim = shop.record.apply_async(("victim",), queue="later")  # waits: nobody consumes "later" yet
    dry = tq_json(broker_url, "revoke", victim.id, "--dry-run")
    assert dry["dry_run"] and dry["task_ids"] == [victim.id]
    asked = tq(broker_url, "revoke", victim.id, stdin="n\n")  # the question is answered no: nothing revoked
    assert asked.returncode == 1 and "aborted" in asked.stderr
    assert victim.id not in tq_json(broker_url, "inspect", "revoked")["nodes"][0]["reply"]
    doc = tq_json(broker_url, "revoke", victim.id, "--yes")
    assert doc["task_ids"] == [victim.id] and doc["nodes"][0]["ok"]
    stale = shop.record.apply_async(("stale",), queue="later", expires=dt.datetime.now(dt.timezone.utc))
    tq_json(broker_url, "control", "add-consumer", "later", "-d", node("w1"))
    assert shop.record.apply_async(("after",), queue="later").get(timeout=10) == "after"
    assert tq_json(broker_url, "result", victim.id, "--wait", "--timeout", "5")["state"] == "REVOKED"
    assert not ledger_lines(ledger, "victim") and shop.app.broker.queue_depth("later") == 0
    # Recorded in the history (before: `task ID` said "name: -" with no timeline, `tasks --state
    # revoked` was always empty): name, args, worker, queue, and why.
    # (RabbitMQ drops the expired message itself, by its TTL: no worker sees it)
    revoked = 2 if transport == "redis" else 1
    wait_for(lambda: len(tq_json(broker_url, "tasks", "--state", "revoked")["tasks"]) == revoked, 10, "the records")
    rows = {row["id"]: row for row in tq_json(broker_url, "tasks", "--state", "revoked")["tasks"]}
    assert transport != "redis" or rows[stale.id]["exception"] == "TaskRevokedError('expired')"
    shown = tq_json(broker_url, "task", victim.id)
    assert (shown["name"], shown["state"], shown["worker"], shown["queue"]) == (
        "tests.apps.shop.record",
        "REVOKED",
        node("w1"),
        "later",
    )
    assert shown["args"] == "('victim',)" and [step["event"] for step in shown["timeline"]] == ["revoked"]
    assert shown["timeline"][0]["detail"] == "TaskRevokedError('revoked')"


def test_terminate_kills_the_running_task_which_ends_revoked(broker_url: str, shop, start_worker, ledger) -> None:
    start_worker("-c", "2", name="w1")
    running = shop.slow_early.delay(20, "doomed")
    wait_for(lambda: ledger_lines(ledger, "start"), 10, "the task to start")
    doc = tq_json(broker_url, "revoke", running.id, "--terminate", "--signal", "SIGKILL", "--yes")
    assert doc["terminate"] and doc["signal"] == "SIGKILL"
    assert doc["nodes"][0]["reply"]["ok"] == f"terminate: {running.id}"
    result = tq_json(broker_url, "result", running.id, "--wait", "--timeout", "10")
    assert result["state"] == "REVOKED" and result["ready"]
    assert not ledger_lines(ledger, "end")
    wait_for(lambda: tq_json(broker_url, "tasks", "--state", "revoked")["tasks"], 10, "the revoked record")
    [row] = tq_json(broker_url, "tasks", "--state", "revoked")["tasks"]
    assert (row["id"], row["name"], row["exception"]) == (
        running.id,
        "tests.apps.shop.slow_early",
        "TaskRevokedError('terminated')",
    )
    assert [step["event"] for step in tq_json(broker_url, "task", running.id)["timeline"]] == ["started", "revoked"]


def test_revoke_with_no_worker_applies_when_one_starts_and_survives_a_restart(
    broker_url: str, transport: str, shop, start_worker, ledger
) -> None:
    ghost = shop.record.delay("ghost")
    proc = tq(broker_url, "revoke", ghost.id, "--yes", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["nodes"] == []
    assert f"stored in the {'broker' if transport == 'redis' else 'result backend'}" in proc.stderr
    worker = start_worker("-c", "1", "-P", "threads", name="w1")
    assert shop.record.delay("visible").get(timeout=10) == "visible"
    assert shop.app.AsyncResult(ghost.id).state == "REVOKED"
    assert not ledger_lines(ledger, "ghost")
    assert ghost.id in tq_json(broker_url, "inspect", "revoked", "-d", node("w1"))["nodes"][0]["reply"]
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    start_worker("-c", "1", "-P", "threads", name="w1")  # same log file: "ready" may be the old run's line
    wait_for(lambda: tq(broker_url, "status", "-d", node("w1")).returncode == 0, 15, "the restarted worker")
    assert ghost.id in tq_json(broker_url, "inspect", "revoked", "-d", node("w1"))["nodes"][0]["reply"]
    shop.record.apply_async(("again",), task_id=ghost.id)  # the revoked id delivered again: still skipped
    assert shop.record.delay("after-restart").get(timeout=10) == "after-restart"
    assert not ledger_lines(ledger, "again") and shop.app.AsyncResult(ghost.id).state == "REVOKED"


# -- history: tasks, task, failures, retry -------------------------------------------------------------
def test_retry_reruns_a_failed_task_with_its_original_arguments(broker_url: str, start_worker, tmp_path) -> None:
    start_worker("-P", "threads", name="g1", app="tests.apps.guarded")
    marker = str(tmp_path / "marker")
    sent_at = time.monotonic()
    first = tq(
        broker_url,
        "call",
        "guarded.fail_once",
        "--args",
        json.dumps([marker]),
        "--kwargs",
        '{"value": 7}',
        "--expires",
        "3",
    )
    assert first.returncode == 0
    old = first.stdout.strip()
    wait_for(lambda: tq_json(broker_url, "failures")["count"] == 1, 10, "the failure to be recorded")
    detail = tq_json(broker_url, "task", old)
    assert detail["state"] == "FAILURE" and detail["failure"]["original_message"]
    assert "RuntimeError: first attempt fails" in detail["failure"]["traceback"]
    assert [step["event"] for step in detail["timeline"]] == ["sent", "started", "failure"]
    assert detail["timeline"][0]["time"] <= detail["timeline"][1]["time"] <= detail["timeline"][2]["time"]
    time.sleep(max(0.0, sent_at + 3.5 - time.monotonic()))  # the original's expiry has passed: a retry still runs
    doc = tq_json(broker_url, "retry", old)
    new = doc["retried"][0]["id"]
    assert doc["retried"] == [{"id": new, "retry_of": old}] and new != old
    result = tq_json(broker_url, "result", new, "--wait", "--timeout", "10")
    assert result["state"] == "SUCCESS" and result["result"] == 7
    wait_for(lambda: tq_json(broker_url, "tasks", "--name", "guarded.*")["count"] == 2, 10, "both runs recorded")
    assert tq_json(broker_url, "task", new)["retry_of"] == old
    assert tq_json(broker_url, "task", old)["retried_as"] == [new]
    shown = tq(broker_url, "task", new).stdout.splitlines()
    assert f"retry_of: {old}" in shown and "retried_as: -" in shown  # (it was a blank "retried_as: ")
    assert tq(broker_url, "retry", old).returncode == 1  # the failure left the inbox when retried


def queued_headers(broker_url: str, transport: str, redis_client: redis.Redis) -> list[dict[str, Any]]:
    """The headers of every message waiting on ``celery``, left where they are."""
    if transport == "redis":
        return [json.loads(raw)["headers"] for raw in redis_client.lrange(priority_key("celery", 0), 0, -1)]
    # RabbitMQ shows a message only by delivering it: take each unacked; closing puts them all back.
    conn = open_connection(broker_url)
    try:
        channel = conn.channel()
        found = []
        while (message := channel.basic_get("celery")) is not None:
            found.append(dict(message.headers))
        return found
    finally:
        conn.release()


def test_retry_with_nothing_matching_says_so_and_asks_nothing(broker_url: str) -> None:
    """`retry --failed --group nomatch --yes` printed nothing at all, exit 0; without --yes it
    asked "retry 0 failed task(s)?" and, with no answer, exited 1."""
    for argv in (["--group", "nomatch", "--yes"], ["--name", "no.such.task"]):
        done = tq(broker_url, "retry", "--failed", *argv)
        assert done.returncode == 0 and done.stdout == "", done.stderr
        assert done.stderr.strip().splitlines() == ["tqctl: nothing to retry: no failure in the inbox matches"]
    doc = json.loads(tq(broker_url, "retry", "--failed", "--group", "nomatch", "--json").stdout)
    assert doc["count"] == 0 and doc["retried"] == []


def test_retry_failed_group_is_throttled_to_the_rate(
    broker_url: str, transport: str, start_worker, tmp_path, redis_client: redis.Redis, client: App
) -> None:
    worker = start_worker("-P", "threads", "-c", "8", name="g1", app="tests.apps.guarded")
    for i in range(500):
        client.send_task("guarded.fail_once", [str(tmp_path / f"m{i}")], {"value": i})
    history = History(redis_client)
    wait_for(lambda: len(history.failures(1000)) == 500, 30, "500 failures", interval=0.2)
    old_ids = {f["id"] for f in history.failures(1000)}
    worker.signal(signal.SIGTERM)  # the retries wait in the queue, where their send times can be read
    assert worker.wait(15) == 0
    dry = tq_json(broker_url, "retry", "--failed", "--name", "guarded.fail_once", "--dry-run")
    assert dry["count"] == 500 and set(dry["task_ids"]) == old_ids and len(history.failures(1000)) == 500
    proc = tq(
        broker_url, "retry", "--failed", "--name", "guarded.fail_once", "--rate", "50/s", "--yes", "--json", timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["count"] == 500 and not doc["skipped"] and "retried 500/500" in proc.stderr  # progress on stderr
    assert {pair["retry_of"] for pair in doc["retried"]} == old_ids and history.failures(1000) == []
    queued = queued_headers(broker_url, transport, redis_client)
    assert {h["id"]: h["retry_of"] for h in queued} == {p["id"]: p["retry_of"] for p in doc["retried"]}
    sent = sorted(h["sent_at"] for h in queued)
    print(f"group retry: 500 in {sent[-1] - sent[0]:.2f}s = {499 / (sent[-1] - sent[0]):.1f}/s")
    # 50/s: no one-second window holds more than 50 of them (send times are rounded to the
    # millisecond). Gaps between two sends are not asserted: on a loaded machine a late send and
    # the next one may come close together without breaking the rate.
    assert all(sent[i + 50] - sent[i] >= 0.999 for i in range(len(sent) - 50))
    start_worker("-P", "threads", "-c", "8", name="g2", app="tests.apps.guarded")
    new_ids = {pair["id"] for pair in doc["retried"]}
    wait_for(
        lambda: len(new_ids & {r["id"] for r in history.records(2000) if r["state"] == "SUCCESS"}) == 500,
        30,
        "all 500 retries to succeed",
        interval=0.2,
    )
    runs = {r["id"]: r for r in history.records(2000) if r["id"] in new_ids}
    assert {r["retry_of"] for r in runs.values()} == old_ids  # each new run names the failure it retries


def test_a_console_started_after_1000_tasks_ran_sees_them(
    broker_url: str, shop, start_worker, redis_client: redis.Redis
) -> None:
    start_worker("-P", "threads", "-c", "8", name="w1")
    sent = {shop.add.delay(i, i).id for i in range(1000)}
    history = History(redis_client)  # on the broker (Redis) or the Redis result backend (AMQP): both this server
    wait_for(lambda: len(history.records(1000)) >= 1000, 30, "1000 records", interval=0.2)
    doc = tq_json(broker_url, "tasks", "--limit", "1000")
    assert doc["count"] == 1000 and {t["id"] for t in doc["tasks"]} == sent
    assert all(t["state"] == "SUCCESS" and t["worker"] == node("w1") for t in doc["tasks"])
    finished = [t["finished"] for t in doc["tasks"]]
    assert finished == sorted(finished, reverse=True)  # newest first
    assert tq_json(broker_url, "tasks", "--limit", "5", "--state", "success", "--worker", "w1")["count"] == 5
    assert tq_json(broker_url, "tasks", "--since", "2099-01-01T00:00:00")["count"] == 0


def test_failures_are_grouped_by_fingerprint(broker_url: str, shop, start_worker) -> None:
    start_worker("-P", "threads", name="w1")
    for message in ("card 1 declined", "card 22 declined", "card 333 declined", "out of stock"):
        shop.fail.delay(message)
    wait_for(lambda: sum(g["count"] for g in tq_json(broker_url, "failures")["groups"]) == 4, 10, "4 failures")
    groups = tq_json(broker_url, "failures")["groups"]
    assert sorted((g["count"], g["open"]) for g in groups) == [(1, 1), (3, 3)]
    assert all(g["task_name"] == "tests.apps.shop.fail" and g["exc_type"] == "ValueError" for g in groups)
    assert all(g["first_seen"] <= g["last_seen"] for g in groups)
    picked = tq_json(broker_url, "retry", "--failed", "--exception", "out of stock", "--dry-run")
    assert picked["count"] == 1
    assert (
        tq_json(broker_url, "retry", "--failed", "--exception", "ValueError", "--limit", "2", "--dry-run")["count"] == 2
    )
    assert tq_json(broker_url, "retry", "--failed", "--name", "no.such.*", "--dry-run")["count"] == 0


def test_discard_removes_failures_by_group_or_by_id_and_asks_first(broker_url: str, shop, start_worker) -> None:
    start_worker("-P", "threads", name="w1")
    for message in ("card 1 declined", "card 22 declined", "card 333 declined", "out of stock"):
        shop.fail.delay(message)
    wait_for(lambda: tq_json(broker_url, "retry", "--failed", "--dry-run")["count"] == 4, 10, "4 stored failures")
    cards = next(g for g in tq_json(broker_url, "failures")["groups"] if g["count"] == 3)["fingerprint"]

    unasked = tq(broker_url, "discard", "--failed", "--group", cards)  # no terminal: the answer is no
    assert unasked.returncode == 1 and "aborted" in unasked.stderr
    assert tq_json(broker_url, "discard", "--failed", "--group", cards, "--dry-run")["count"] == 3
    assert tq_json(broker_url, "retry", "--failed", "--dry-run")["count"] == 4  # nothing changed yet

    done = tq_json(broker_url, "discard", "--failed", "--group", cards, "--yes")
    assert (done["count"], done["gone"]) == (3, [])
    assert [g["sample"] for g in tq_json(broker_url, "failures")["groups"]] == ["out of stock"]  # group forgotten

    (last,) = tq_json(broker_url, "retry", "--failed", "--dry-run")["task_ids"]
    assert tq_json(broker_url, "discard", last, "--yes") == {"discarded": [last], "count": 1, "gone": []}
    again = tq(broker_url, "discard", last, "--yes")
    assert again.returncode == 1 and f"no failure recorded for {last}" in again.stderr
    assert "Traceback" not in again.stderr
    assert tq_json(broker_url, "failures")["groups"] == []


def test_questions_left_unanswered_leave_stdout_empty_under_json(broker_url: str, shop, start_worker) -> None:
    """A question goes to stderr: stdout holds the --json document or nothing (it held the prompt,
    or the stray " " of click's input(" ")), and a dry run with no worker still says it is one."""
    dry = tq(broker_url, "control", "shutdown", "--dry-run", "--json")
    assert dry.returncode == 69 and json.loads(dry.stdout) == {
        "command": "shutdown",
        "arguments": {},
        "dry_run": True,
        "nodes": [],
        "count": 0,
    }
    start_worker("-P", "threads", name="w1")
    shop.fail.delay("card declined")
    shop.app.send_task("no.such.task")  # an unknown task: dead-lettered
    wait_for(lambda: tq_json(broker_url, "retry", "--failed", "--dry-run")["count"] == 1, 10, "the stored failure")
    wait_for(lambda: len(tq_json(broker_url, "dead", "ls")) == 1, 10, "the dead letter")
    for argv in (
        ["revoke", "some-id"],
        ["retry", "--failed"],
        ["discard", "--failed"],
        ["control", "shutdown"],
        ["dead", "requeue", "--all"],
    ):
        proc = tq(broker_url, *argv, "--json")  # stdin is empty: nobody answers
        assert (proc.returncode, proc.stdout) == (1, ""), argv
        assert "[y/N]: \ntqctl: error: aborted: nothing changed" in proc.stderr, argv
    assert tq(broker_url, "status").returncode == 0  # not shut down


def test_run_now_sends_a_delayed_task_to_its_queue_at_once(broker_url: str, transport: str, shop, start_worker) -> None:
    start_worker("-P", "threads", name="w1")
    task_id = shop.add.apply_async((2, 3), countdown=3600).id
    if transport == "amqp":  # RabbitMQ keeps no delayed set: nothing in the broker to move
        held = tq(broker_url, "run-now", task_id)
        assert held.returncode == 1 and "RabbitMQ keeps no delayed set" in held.stderr
        assert len(held.stderr.splitlines()) == 1 and "Traceback" not in held.stderr
        return
    parked = lambda: tq_json(broker_url, "inspect", "scheduled")["broker"]["delayed"]  # noqa: E731
    wait_for(lambda: [row["id"] for row in parked()] == [task_id], 20, "the worker to park it in the delayed set")
    waiting = tq_json(broker_url, "task", task_id)  # before: "no record of task", exit 1
    assert (waiting["state"], waiting["name"], waiting["queue"], waiting["args"]) == (
        "SCHEDULED",
        "tests.apps.shop.add",
        "celery",
        "(2, 3)",
    )
    assert waiting["eta"] == parked()[0]["eta"] and waiting["runs"] == []
    assert f"eta: {waiting['eta']}" in tq(broker_url, "task", task_id).stdout
    assert tq_json(broker_url, "run-now", task_id) == {
        "moved": [{"id": task_id, "queue": "celery"}],
        "count": 1,
        "errors": [],
    }
    assert shop.app.AsyncResult(task_id).get(timeout=20) == 5
    twice = tq(broker_url, "run-now", task_id)
    assert twice.returncode == 1 and "is not in the delayed set: it became due" in twice.stderr


# -- tail, call, result ------------------------------------------------------------------------------
def test_tail_streams_json_lines_and_filters(broker_url: str, shop, start_worker) -> None:
    start_worker("-P", "threads", name="w1")
    env = {**os.environ, "TQCTL_BROKER": broker_url, "PYTHONPATH": str(ROOT)}
    tail = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tqctl",
            "tail",
            "--json",
            "--state",
            "SUCCESS",
            "--name",
            "tests.apps.shop.add",
            "--count",
            "3",
            "--for",
            "20",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while tail.poll() is None and time.monotonic() < deadline:
        shop.add.delay(1, 2)
        shop.fail.delay("noise")
        time.sleep(0.3)
    out, err = tail.communicate(timeout=10)
    assert tail.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 3
    for event in events:
        assert event["type"] == "task-succeeded" and event["state"] == "SUCCESS"
        assert event["name"] == "tests.apps.shop.add" and event["result"] == "3"
        assert event["hostname"] == node("w1") and event["timestamp"].endswith("+00:00")
    stopped = tq(broker_url, "tail", "--for", "1")
    assert stopped.returncode == 0


def test_call_by_name_and_read_the_result(broker_url: str, start_worker) -> None:
    start_worker("-P", "threads", name="w1")
    sent = tq_json(broker_url, "call", "tests.apps.shop.add", "--args", "[2, 3]", "--priority", "5")
    assert sent["name"] == "tests.apps.shop.add" and sent["queue"] == "celery"
    result = tq_json(broker_url, "result", sent["id"], "--wait", "--timeout", "10")
    assert result == {**result, "id": sent["id"], "state": "SUCCESS", "ready": True, "result": 5}
    kw = tq(broker_url, "call", "tests.apps.shop.add", "--kwargs", '{"x": 1, "y": 1}', "--countdown", "0.5")
    assert tq_json(broker_url, "result", kw.stdout.strip(), "--wait", "--timeout", "10")["result"] == 2
    pending = tq_json(broker_url, "result", "no-such-id")
    assert pending["state"] == "PENDING" and not pending["ready"]
    late = tq(broker_url, "result", "no-such-id", "--wait", "--timeout", "0.5")
    assert late.returncode == 1 and "not ready" in late.stderr


# -- workers, queues, purge --------------------------------------------------------------------------
def test_workers_table_combines_stats_replies_and_heartbeats(broker_url: str, shop, start_worker) -> None:
    start_worker("-c", "2", name="w1")
    for i in range(3):
        shop.add.delay(i, i).get(timeout=10)
    doc = tq_json(broker_url, "workers", "--listen", "2.5")
    assert doc["count"] == 1
    row = doc["workers"][0]
    assert row | {"load": None, "heartbeat_age": None, "last_heartbeat": None, "pid": None, "uptime": None} == {
        "name": node("w1"),
        "replied": True,
        "pool": "prefork",
        "concurrency": 2,
        "processes": 2,
        "active": 0,
        "processed": 3,
        "load": None,
        "heartbeat_age": None,
        "last_heartbeat": None,
        "pid": None,
        "uptime": None,
    }
    assert len(row["load"]) == 3 and 0 <= row["heartbeat_age"] < 10  # heard within the --listen window
    none = tq(broker_url, "workers", "-d", node("nobody"), "--listen", "0.2")
    assert none.returncode == 69


def test_queues_show_buckets_age_consumers_and_warn_about_orphans(
    broker_url: str, transport: str, shop, start_worker
) -> None:
    start_worker("-P", "threads", "-Q", "celery,extra", name="w1")
    for priority in (0, 5, 5):
        shop.add.apply_async((1, 1), queue="orphan", priority=priority)
    time.sleep(0.5)
    proc = tq(broker_url, "queues", "-Q", "orphan", "--json")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    by_name = {q["name"]: q for q in doc["queues"]}
    assert set(by_name) == {"celery", "extra", "orphan"}
    orphan = by_name["orphan"]
    assert orphan["depth"] == 3 and orphan["consumers"] == []
    if transport == "redis":  # one RabbitMQ queue holds every priority, and its messages cannot be read in place
        assert [b["depth"] for b in orphan["buckets"]] == [1, 2, 0, 0]
        assert orphan["oldest_age"] >= 0.5 and orphan["oldest_sent_at"]
    assert by_name["celery"]["consumers"] == [node("w1")] and by_name["extra"]["consumers"] == [node("w1")]
    # RabbitMQ counts every consumer of a queue (a Celery worker's too); on Redis the workers' answers tell
    nobody = "no live worker consumes it" if transport == "redis" else "no consumer"
    assert doc["warnings"] == [f"queue 'orphan' has 3 message(s) but {nobody}"]
    assert "warning: queue 'orphan'" in proc.stderr
    if transport == "redis":  # (RabbitMQ names its queues only through its management API)
        plain = tq(broker_url, "queues", "--json")  # no -Q: it used to hide the orphan and its warning
        assert plain.returncode == 0, plain.stderr
        listed = {q["name"]: q for q in json.loads(plain.stdout)["queues"]}
        assert set(listed) == {"celery", "extra", "orphan"} and listed["orphan"]["depth"] == 3
        assert json.loads(plain.stdout)["warnings"] == doc["warnings"] and "warning: queue 'orphan'" in plain.stderr


def test_purge_asks_for_the_queue_name_and_dry_run_touches_nothing(broker_url: str, shop) -> None:
    for priority in (0, 0, 9):
        shop.add.apply_async((1, 1), queue="jobs", priority=priority)
    dry = tq_json(broker_url, "purge", "jobs", "--dry-run")
    assert dry["count"] == 3 and dry["dry_run"] and shop.app.broker.queue_depth("jobs") == 3
    wrong = tq(broker_url, "purge", "jobs", stdin="celery\n")
    assert wrong.returncode == 1 and "aborted" in wrong.stderr and shop.app.broker.queue_depth("jobs") == 3
    assert tq_json(broker_url, "purge", "jobs", stdin="jobs\n") == {"queue": "jobs", "purged": 3}
    assert shop.app.broker.queue_depth("jobs") == 0  # every priority's messages went
    shop.add.apply_async((1, 1), queue="jobs")
    assert tq_json(broker_url, "purge", "jobs", "--yes") == {"queue": "jobs", "purged": 1}


# -- a real Celery 5 worker --------------------------------------------------------------------------
def test_a_celery_worker_answers_status_inspect_and_control(broker_url: str, backend_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "INTEROP_BROKER": broker_url, "INTEROP_BACKEND": backend_url, "PYTHONPATH": str(ROOT)}
    log = open(tmp_path / "celery.log", "ab")
    celery = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.apps.celery_interop",
            "worker",
            "-E",
            "-P",
            "solo",
            "-n",
            "c1@%h",
            "-l",
            "info",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: tq(broker_url, "status", "-d", node("c1")).returncode == 0, 25, "the Celery worker")
        status = tq_json(broker_url, "status")
        assert [n["name"] for n in status["nodes"]] == [node("c1")]
        stats = tq_json(broker_url, "inspect", "stats", "-d", node("c1"))["nodes"][0]["reply"]
        assert "solo" in stats["pool"]["implementation"] and stats["pid"] == celery.pid
        assert "interop.add" in tq_json(broker_url, "inspect", "registered", "-d", node("c1"))["nodes"][0]["reply"]
        grow = tq_json(broker_url, "control", "pool_grow", "1", "-d", node("c1"), code=1)
        assert grow["count"] == 1 and "grow" in grow["nodes"][0]["error"]  # Celery's solo pool cannot grow
        workers = tq_json(broker_url, "workers", "--listen", "2.5")["workers"]
        assert workers[0]["pool"] == "solo" and workers[0]["heartbeat_age"] is not None
    finally:
        os.killpg(celery.pid, signal.SIGKILL)
        celery.wait(10)
        log.close()
