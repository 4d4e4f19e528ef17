"""Results written behind (``engine.backend.held``): a work-sharing prefork child on Redis writes
its late-acked tasks' plain results several to a write. What a user relies on must not move: a
result is readable when its ``task-succeeded`` event arrives, a message is acked only once its
result is stored, and a child that dies holding results has those tasks run again."""

from __future__ import annotations

import threading
from pathlib import Path

from engine.bundled import client_for
from engine.protocol import events
from tests.integration.harness import wait_for
from tqctl.benchmark import reference_client

APP = "tests.apps.reliability"


def _ledger_runs(ledger: Path, tag_prefix: str) -> dict[str, int]:
    runs: dict[str, int] = {}
    for line in ledger.read_text().splitlines() if ledger.exists() else []:
        what, tag = line.split()[:2]
        if what == "run" and tag.startswith(tag_prefix):
            runs[tag] = runs.get(tag, 0) + 1
    return runs


def test_each_result_is_stored_before_its_success_event_is_published(rel, start_worker, redis_url: str) -> None:
    """Read in the order the server ran the commands (MONITOR): every ``task-succeeded`` event is
    published after its task's result was written, as Celery's worker does."""
    monitor = reference_client(client_for(redis_url, timeout=None)).monitor()  # redis-py: MONITOR
    commands: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        with monitor as m:
            while not stop.is_set():
                commands.append(m.next_command()["command"])

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start_worker("-c", "2", name="w1", app=APP)  # task events are on by default
    ids = [r.id for r in rel.app.send_many(rel.record_late.name, [((f"ev{i}",), None) for i in range(1000)])]
    wait_for(lambda: all(rel.app.AsyncResult(i).ready() for i in ids), 60, "every result stored")
    wait_for(lambda: len(_announced(commands, ids)) == len(ids), 30, "every task-succeeded event")
    stop.set()
    rel.app.AsyncResult(ids[0]).ready()  # one more command, so the watcher's last wait ends
    watcher.join(10)
    written: set[str] = set()
    early: list[str] = []
    for command in list(commands):
        if command.startswith(("SETEX celery-task-meta-", "SET celery-task-meta-")):
            written.add(command.split()[1].removeprefix("celery-task-meta-"))
        for task_id in _announced([command], ids):
            if task_id not in written:
                early.append(task_id)
    assert early == []  # no event announced a result the store did not have yet


def _announced(commands: list[str], ids: list[str]) -> set[str]:
    """Ids of ``ids`` whose task-succeeded event one of these PUBLISH commands carried."""
    wanted, found = set(ids), set()
    for command in commands:
        if not command.startswith("PUBLISH") or "celeryev" not in command:
            continue
        payload = command.split(" ", 2)[2].encode().decode("unicode_escape").encode("latin-1")
        for event in events.decode(payload):
            if event.get("type") == "task-succeeded" and event.get("uuid") in wanted:
                found.add(event["uuid"])
    return found


def test_a_child_that_dies_holding_results_has_those_tasks_run_again(rel, start_worker, ledger: Path) -> None:
    worker = start_worker("-c", "2", name="w1", app=APP)
    batch = [((f"held{i}",), None) for i in range(200)]
    sent = rel.app.send_many(rel.record_late.name, batch[:100])
    sent += rel.app.send_many(rel.die_late.name, [(("killer",), None)])  # ends its child mid-stream
    sent += rel.app.send_many(rel.record_late.name, batch[100:])
    ids = [r.id for r in sent[:100] + sent[101:]]
    wait_for(lambda: all(rel.app.AsyncResult(i).ready() for i in ids), 60, "every result stored")
    assert {rel.app.AsyncResult(i).get(timeout=5) for i in ids} == {f"held{i}" for i in range(200)}
    runs = _ledger_runs(ledger, "held")
    assert set(runs) == {f"held{i}" for i in range(200)}  # each ran, at least once
    wait_for(lambda: rel.app.broker.dead_letter_count() == 1, 60, "the killer dead-lettered")
    assert worker.proc.poll() is None
