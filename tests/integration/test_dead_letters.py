"""Messages a worker cannot run end in the dead-letter store with a reason, never kill the worker.

Raw bytes go straight onto the ``celery`` list with redis-py (as a foreign or broken producer would);
a real worker sorts them; the store (``tqctl.dead.*``) and the real ``python -m tqctl dead`` CLI show
what happened. The worker runs ``tests.apps.reliability``, whose message-size limit is small.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import redis

from engine import serialization
from engine.broker.redis import INFLIGHT
from engine.exceptions import NotRegistered
from engine.protocol import task as protocol
from tests.integration.harness import ROOT, wait_for

pytestmark = pytest.mark.integration

APP = "tests.apps.reliability"
ECHO = "tests.apps.reliability.echo"


# -- building bad messages -------------------------------------------------------------------------
def edited(change: Callable[[dict], None], name: str = ECHO) -> tuple[bytes, str]:
    """A valid echo message with its envelope changed by ``change``; returns (raw, task id)."""
    task_id, raw = protocol.build(name, [1], {})
    envelope = json.loads(raw)
    change(envelope)
    return json.dumps(envelope).encode(), task_id


def _drop_header(key: str) -> Callable[[dict], None]:
    return lambda envelope: envelope["headers"].pop(key)


def _set_header(key: str, value: object) -> Callable[[dict], None]:
    return lambda envelope: envelope["headers"].__setitem__(key, value)


def _two_element_body(envelope: dict) -> None:
    envelope["body"] = base64.b64encode(serialization.json_dumps([[1], {}]).encode()).decode()


@dataclass(frozen=True)
class Case:
    id: str
    reason: str
    make: Callable[[], tuple[bytes, str | None]]  # → (raw bytes, task id the letter should name)
    names_task: bool  # the letter records the task name (headers were readable)


def _pickle() -> tuple[bytes, str]:
    task_id, raw = protocol.build(ECHO, [1], {}, serializer="pickle")
    assert json.loads(raw)["content-type"] == "application/x-python-serialize"
    return raw, task_id


def _unknown() -> tuple[bytes, str]:
    task_id, raw = protocol.build("tests.apps.reliability.no_such_task", [1], {})
    return raw, task_id


def _too_large() -> tuple[bytes, None]:
    from tests.apps.reliability import MAX_MESSAGE_BYTES

    _task_id, raw = protocol.build(ECHO, ["x" * MAX_MESSAGE_BYTES], {})
    return raw, None


def _undecodable(raw: bytes) -> Callable[[], tuple[bytes, None]]:
    def make() -> tuple[bytes, None]:
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
        return raw, None

    return make


CASES = [
    Case("undecodable", "undecodable", _undecodable(b"\xff\xfe\x00\xd8\x80"), False),
    Case("undecodable-even-length", "undecodable", _undecodable(b"\xff\xfe\x00\xd8 not utf-8 \x80"), False),
    Case("invalid-json", "invalid_json", lambda: (b'{"body": "W10=", "headers": {"task": ', None), False),
    Case("not-an-object", "bad_envelope", lambda: (b"[1, 2, 3]", None), False),
    Case("pickle", "content_disallowed", _pickle, True),
    Case("unknown-task", "unknown_task", _unknown, True),
    Case("missing-id", "missing_header", lambda: (edited(_drop_header("id"))[0], None), True),
    Case("missing-task", "missing_header", lambda: edited(_drop_header("task")), False),
    Case("two-element-body", "bad_body", lambda: edited(_two_element_body), True),
    Case("too-large", "too_large", _too_large, False),
    Case("bad-eta", "bad_header", lambda: edited(_set_header("eta", "next tuesday at noon")), True),
]


def _case_id(case: object) -> str:
    return case.id if isinstance(case, Case) else str(case)


def no_inflight_anywhere(client: redis.Redis) -> bool:
    return all(client.hlen(key) == 0 for key in client.scan_iter(match=INFLIGHT + "*"))


# -- each bad message -------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_bad_message_is_dead_lettered_and_worker_keeps_serving(rel, start_worker, redis_client, case: Case) -> None:
    worker = start_worker("-c", "1", name="w1", app=APP)
    raw, task_id = case.make()
    redis_client.lpush("celery", raw)
    after = rel.pid.delay()  # queued behind the bad one

    child, parent = after.get(timeout=10)
    assert parent == worker.pid, "the good task was not served by the same worker process"
    assert worker.proc.poll() is None
    broker = rel.app.broker
    wait_for(lambda: broker.dead_letter_count() == 1, 5, "the bad message in the dead-letter store")
    (letter,) = broker.dead_letters()
    assert letter.reason == case.reason, letter.detail
    assert letter.raw == raw, "the dead letter does not keep the exact bytes"
    assert letter.queue == "celery"
    assert letter.task_id == task_id
    assert letter.task_name == (json.loads(raw)["headers"]["task"] if case.names_task else None)
    assert letter.worker == f"w1@{socket.gethostname()}"
    assert letter.detail
    assert f"dead-lettered a message from celery: {case.reason}" in worker.log()
    # Settled exactly once: not back on the queue, not left in flight.
    assert redis_client.llen("celery") == 0
    wait_for(lambda: no_inflight_anywhere(redis_client), 5, "the good task's ack")
    assert broker.dead_letter_count() == 1


def test_unknown_task_stores_a_not_registered_failure(rel, start_worker) -> None:
    start_worker("-c", "1", name="w1", app=APP)
    result = rel.app.send_task("tests.apps.reliability.not_here", args=[1])
    with pytest.raises(NotRegistered, match="not_here"):
        result.get(timeout=10)
    assert result.state == "FAILURE"
    wait_for(lambda: rel.app.broker.dead_letters(), 5, "the dead letter (written just after the result)")
    (letter,) = rel.app.broker.dead_letters()
    assert letter.reason == "unknown_task" and letter.task_id == result.id


# -- the operator's view: tqctl dead --------------------------------------------------------------
def tqctl(broker_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQCTL_BROKER": broker_url, "PYTHONPATH": str(ROOT)}
    env.pop("TQCTL_BACKEND", None)
    return subprocess.run(
        [sys.executable, "-m", "tqctl", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def tqctl_json(broker_url: str, *args: str, code: int = 0) -> object:
    done = tqctl(broker_url, *args, "--json")
    assert done.returncode == code, f"exit {done.returncode}: {done.stderr}"
    return json.loads(done.stdout)


def test_dead_cli_lists_requeues_and_deletes(rel, start_worker, redis_client, broker_url: str) -> None:
    # A shop worker does not know reliability's echo task: that one is unknown there, but runs on
    # a reliability worker once requeued. The broken JSON can only ever be deleted.
    shop_worker = start_worker("-c", "1", name="shop", app="tests.apps.shop")
    broken = b'{"headers": {"task": "x", "id": "y"}, "body": '
    redis_client.lpush("celery", broken)
    echo = rel.echo.delay("back again")
    broker = rel.app.broker
    wait_for(lambda: broker.dead_letter_count() == 2, 10, "two dead letters")
    assert rel.app.AsyncResult(echo.id).state == "FAILURE"  # NotRegistered, from the shop worker
    shop_worker.signal(signal.SIGTERM)
    assert shop_worker.wait(15) == 0

    rows = tqctl_json(broker_url, "dead", "ls")
    assert isinstance(rows, list) and len(rows) == 2
    by_reason = {row["reason"]: row for row in rows}
    assert set(by_reason) == {"invalid_json", "unknown_task"}
    unknown, bad_json = by_reason["unknown_task"], by_reason["invalid_json"]
    assert unknown["task_id"] == echo.id and unknown["task_name"] == rel.echo.name
    assert unknown["queue"] == bad_json["queue"] == "celery"
    assert bad_json["task_id"] is None and bad_json["size"] == len(broken)
    for row in rows:
        assert {"id", "time", "queue", "reason", "detail", "task_name", "task_id", "worker", "size"} <= set(row)

    shown = tqctl_json(broker_url, "dead", "show", bad_json["id"])
    assert shown["raw"] == broken.decode() and shown["reason"] == "invalid_json"

    # --dry-run names what it would touch and changes nothing.
    plan = tqctl_json(broker_url, "dead", "requeue", unknown["id"], "--dry-run")
    assert plan == {"action": "requeue", "dry_run": True, "ids": [unknown["id"]], "count": 1, "missing": []}
    plan = tqctl_json(broker_url, "dead", "delete", "--all", "--dry-run")
    assert plan["action"] == "delete" and plan["dry_run"] is True and plan["missing"] == []
    assert sorted(plan["ids"]) == sorted(r["id"] for r in rows) and plan["count"] == 2
    # A typo'd id is not part of the plan: reported missing, exit 1, as the real run would.
    plan = tqctl_json(broker_url, "dead", "delete", bad_json["id"], "no-such-letter", "--dry-run", code=1)
    assert plan["ids"] == [bad_json["id"]] and plan["count"] == 1 and plan["missing"] == ["no-such-letter"]
    assert broker.dead_letter_count() == 2 and redis_client.llen("celery") == 0

    # Without --yes and no terminal to confirm on: refused, nothing changed.
    refused = tqctl(broker_url, "dead", "delete", bad_json["id"])
    assert refused.returncode != 0
    assert broker.dead_letter_count() == 2

    # requeue: the exact bytes go back on their queue, and a worker that knows the task runs it.
    raw = broker.dead_letter_get(unknown["id"]).raw
    done = tqctl_json(broker_url, "dead", "requeue", unknown["id"], "--yes")
    assert done == {"action": "requeue", "ids": [unknown["id"]], "count": 1, "missing": []}
    assert redis_client.lrange("celery", 0, -1) == [raw]
    assert [r["id"] for r in tqctl_json(broker_url, "dead", "ls")] == [bad_json["id"]]
    start_worker("-c", "1", name="w2", app=APP)
    # The shop worker's NotRegistered FAILURE is already stored, so get() would return it at once:
    # wait for the state to turn (a fresh handle each time: a ready result is cached).
    wait_for(lambda: rel.app.AsyncResult(echo.id).state == "SUCCESS", 10, "the requeued task to run")
    assert rel.app.AsyncResult(echo.id).get(timeout=1) == "back again"

    # delete: gone for good; deleting it again reports it missing with a non-zero exit.
    done = tqctl_json(broker_url, "dead", "delete", bad_json["id"], "--yes")
    assert done == {"action": "delete", "ids": [bad_json["id"]], "count": 1, "missing": []}
    assert tqctl_json(broker_url, "dead", "ls") == []
    again = tqctl_json(broker_url, "dead", "delete", bad_json["id"], "--yes", code=1)
    assert again["missing"] == [bad_json["id"]] and again["count"] == 0
    assert broker.dead_letter_count() == 0


def test_all_with_nothing_dead_is_not_an_error(broker_url: str) -> None:
    """`dead requeue --all --yes` from a cron job failed (exit 1, "error: no dead letters") on
    every run that had nothing to do."""
    assert tqctl_json(broker_url, "dead", "ls") == []
    for verb in ("requeue", "delete"):
        done = tqctl(broker_url, "dead", verb, "--all", "--yes")
        assert done.returncode == 0 and done.stdout == "", done.stderr
        assert done.stderr.strip().splitlines() == [f"tqctl: nothing to {verb}: no dead letters"]
        doc = tqctl_json(broker_url, "dead", verb, "--all")
        assert doc == {"action": verb, "ids": [], "count": 0, "missing": []}
    plan = tqctl_json(broker_url, "dead", "requeue", "--all", "--dry-run")
    assert plan == {"action": "requeue", "ids": [], "count": 0, "missing": [], "dry_run": True}
