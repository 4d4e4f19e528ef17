"""Message signing with real worker processes: signed tasks run; unsigned, tampered and unknown-key
ones are dead-lettered with reason ``bad_signature`` and never run (counted per task id after a
signed sentinel task has run); an old key id still verifies while it is in the key set; unsigned
remote-control messages are ignored; with signing off the published bytes are exactly the
protocol's, nothing added.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from engine import App
from engine.beat import Entry, send_entry
from engine.broker.redis import RedisBroker
from engine.protocol import task as protocol
from engine.protocol.template import Template, Templates
from engine.signing import HEADER, Signer
from tests.apps import faults
from tests.integration.harness import ROOT, WorkerProcess, wait_for

pytestmark = pytest.mark.integration

K1 = "old-secret-0123456789abcdef"
K2 = "new-secret-fedcba9876543210"
COUNT = "tests.apps.faults.count"
WORKER_KEYS = {"TQCTL_SIGNING_KEYS": f"k2={K2},k1={K1}", "TQCTL_SIGNING_KEY_ID": "k2"}


def client(broker_url: str, keys: dict[str, str] | None = None, key_id: str | None = None) -> App:
    settings: dict[str, Any] = {"task_send_sent_event": False}
    if keys:
        settings.update(tqctl_signing_keys=keys, tqctl_signing_key_id=key_id)
    return App("signclient", broker=broker_url, **settings)


def counter_url(broker_url: str) -> str:
    return f"unix://{urlsplit(broker_url).path}?db=3"  # the counting app's store, apart from the queues


def tqctl(broker_url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TQCTL_SIGNING")}
    full.update(PYTHONPATH=str(ROOT), TQCTL_BROKER=broker_url, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "tqctl", *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=60
    )


def tampered(raw: bytes) -> bytes:
    """The same signed message with its arguments changed and the signature left as it was."""
    envelope = json.loads(raw)
    envelope["body"] = base64.b64encode(json.dumps([[99], {}, protocol.EMPTY_EMBED]).encode()).decode()
    return json.dumps(envelope).encode()


def dead_reasons(broker_url: str) -> dict[str, str]:
    broker = RedisBroker(broker_url)
    try:
        return {letter.task_id or "": letter.reason for letter in broker.dead_letters(1000)}
    finally:
        broker.close()


def test_worker_runs_signed_and_dead_letters_unsigned_tampered_and_unknown_key(broker_url: str, tmp_path: Path) -> None:
    counter = counter_url(broker_url)
    worker = WorkerProcess(
        broker_url,
        ["-c", "2", "-n", "signed@%h"],
        tmp_path / "worker.log",
        {"FAULT_COUNTER_URL": counter, **WORKER_KEYS},
        app="tests.apps.faults",
    ).wait_ready(60)
    current = client(broker_url, {"k2": K2, "k1": K1}, "k2")
    old = client(broker_url, {"k1": K1}, "k1")  # a client not yet rotated: the old key id
    unknown = client(broker_url, {"k3": "some-other-secret-000000"}, "k3")
    unsigned = client(broker_url)
    try:
        good = [current.send_task(COUNT).id for _ in range(5)] + [old.send_task(COUNT).id for _ in range(5)]
        bad_unsigned = unsigned.send_task(COUNT).id
        bad_unknown = unknown.send_task(COUNT).id
        task_id, raw = protocol.build(COUNT, [0.0])
        redis.Redis.from_url(f"unix://{urlsplit(broker_url).path}").lpush("celery", tampered(current.signer.sign(raw)))
        sentinel = current.send_task(COUNT).id  # signed, sent last: once it ran, everything before was seen
        wait_for(lambda: faults.runs(counter).get(sentinel), 60, "the signed sentinel task")
        wait_for(lambda: len(dead_reasons(broker_url)) >= 3, 30, "the refused messages to be dead-lettered")
        runs = faults.runs(counter)
        assert all(runs.get(tid) == 1 for tid in good)
        for refused in (bad_unsigned, bad_unknown, task_id):
            assert refused not in runs
        assert dead_reasons(broker_url) == {
            bad_unsigned: "bad_signature",
            bad_unknown: "bad_signature",
            task_id: "bad_signature",
        }
        shown = tqctl(broker_url, "dead", "ls", "--json")
        assert shown.returncode == 0 and "bad_signature" in shown.stdout
        log = worker.log()
        assert K1 not in log and K2 not in log  # the secrets are never logged
        assert "signed with key id 'k3'" in log and "altered" in log
    finally:
        for app in (current, old, unknown, unsigned):
            app.close()
        worker.close()


def test_control_messages_must_be_signed_too(broker_url: str, tmp_path: Path) -> None:
    worker = WorkerProcess(broker_url, ["-P", "threads", "-n", "ctl@%h"], tmp_path / "worker.log", WORKER_KEYS)
    try:
        worker.wait_ready(60)
        unsigned = tqctl(broker_url, "status", "--timeout", "2")
        assert unsigned.returncode == 69, unsigned.stdout + unsigned.stderr
        signed = tqctl(broker_url, "status", "--timeout", "3", env=WORKER_KEYS)
        assert signed.returncode == 0 and "ctl@" in signed.stdout, signed.stderr
        old_key = tqctl(
            broker_url,
            "inspect",
            "conf",
            "--timeout",
            "3",
            env={"TQCTL_SIGNING_KEYS": f"k1={K1}", "TQCTL_SIGNING_KEY_ID": "k1"},
        )
        assert old_key.returncode == 0, old_key.stderr
        assert K1 not in old_key.stdout and K2 not in old_key.stdout
        assert "ignored a remote-control message: bad_signature" in worker.log()
    finally:
        worker.close()


def test_inspect_conf_masks_signing_keys_set_in_the_app(broker_url: str, tmp_path: Path) -> None:
    """Keys in the app's configuration (a dict of key id to secret) came back in clear from
    ``inspect conf``: only setting names were checked for secret words, and "k1" is none."""
    from tests.apps.signed_conf import KEYS

    args = ["-P", "threads", "-n", "confkeys@%h"]
    worker = WorkerProcess(broker_url, args, tmp_path / "worker.log", {}, app="tests.apps.signed_conf")
    keys = {"TQCTL_SIGNING_KEYS": ",".join(f"{k}={v}" for k, v in KEYS.items()), "TQCTL_SIGNING_KEY_ID": "k2"}
    try:
        worker.wait_ready(60)
        shown = tqctl(broker_url, "inspect", "conf", "--json", "--timeout", "3", env=keys)
        assert shown.returncode == 0, shown.stderr
        assert not any(secret in shown.stdout + shown.stderr for secret in KEYS.values())
        [node] = json.loads(shown.stdout)["nodes"]
        assert node["reply"]["tqctl_signing_keys"] == {"k1": "********", "k2": "********"}
    finally:
        worker.close()


def test_signing_off_leaves_the_bytes_alone(broker_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[bytes] = []  # every message the protocol built, in order (template or full build)
    for owner, method in ((Template, "fill"), (Templates, "build")):
        original = getattr(owner, method)

        def recording(*args: Any, _original: Any = original, **kwargs: Any) -> tuple[str, bytes]:
            task_id, raw = _original(*args, **kwargs)
            built.append(raw)
            return task_id, raw

        monkeypatch.setattr(owner, method, recording)
    store = redis.Redis.from_url(f"unix://{urlsplit(broker_url).path}")
    plain, signed = client(broker_url), client(broker_url, {"k2": K2}, "k2")
    try:
        plain.send_task(COUNT, args=[1])
        assert store.lpop("celery") == built[-1]  # exactly the protocol's bytes, nothing added
        assert HEADER not in json.loads(built[-1])["headers"]
        signed.send_task(COUNT, args=[1])
        on_wire = store.lpop("celery")
        assert on_wire != built[-1] and json.loads(on_wire)["headers"][HEADER].startswith("k2:")
        assert Signer({"k2": K2}, "k2").verify(on_wire) is None
        # Beat publishes through the same path: signed when the app signs.
        send_entry(signed, Entry(name="tick", task=COUNT, schedule=1.0))
        assert Signer({"k2": K2}, "k2").verify(store.lpop("celery")) is None
        signed.send_many(COUNT, [((i,), None) for i in range(3)])
        assert all(Signer({"k2": K2}, "k2").verify(raw) is None for raw in store.lrange("celery", 0, -1))
    finally:
        plain.close()
        signed.close()


def test_tqctl_retry_signs_the_republished_message(broker_url: str, tmp_path: Path) -> None:
    """A retry rewrites the stored message (new id, retry_of): with the keys it is signed again and runs;
    without them the signing worker refuses it like any other unsigned message."""
    from engine.history import History

    worker = WorkerProcess(broker_url, ["-P", "threads", "-n", "retry@%h"], tmp_path / "worker.log", WORKER_KEYS)
    app = client(broker_url, {"k2": K2}, "k2")
    history = History(redis.Redis.from_url(f"unix://{urlsplit(broker_url).path}"))
    try:
        worker.wait_ready(60)
        failed = [app.send_task("tests.apps.shop.fail", args=["boom"]) for _ in range(2)]
        for result in failed:
            wait_for(lambda r=result: history.failure(r.id) is not None, 60, "the failure to be kept")
        signed = tqctl(broker_url, "retry", failed[0].id, "--json", env=WORKER_KEYS)
        assert signed.returncode == 0, signed.stderr
        new_id = json.loads(signed.stdout)["retried"][0]["id"]
        wait_for(lambda: history.failure(new_id) is not None, 60, "the signed retry to run (and fail again)")
        unsigned = tqctl(broker_url, "retry", failed[1].id, "--json")
        assert unsigned.returncode == 0, unsigned.stderr
        refused = json.loads(unsigned.stdout)["retried"][0]["id"]
        wait_for(lambda: dead_reasons(broker_url).get(refused) == "bad_signature", 60, "the unsigned retry refused")
        assert history.failure(refused) is None
    finally:
        app.close()
        worker.close()


def test_console_group_retry_signs_each_republished_message(broker_url: str, tmp_path: Path) -> None:
    """The Failures screen's "retry the group" rewrites each stored message as one retry does: with
    signing on each must be signed again, or the signing worker dead-letters them all."""
    from engine.history import History
    from tqctl.tui.adapter import Adapter

    worker = WorkerProcess(broker_url, ["-P", "threads", "-n", "group@%h"], tmp_path / "worker.log", WORKER_KEYS)
    app = client(broker_url, {"k2": K2}, "k2")
    adapter = Adapter(broker_url, app=app)
    history = History(redis.Redis.from_url(f"unix://{urlsplit(broker_url).path}"))
    try:
        worker.wait_ready(60)
        failed = [app.send_task("tests.apps.shop.fail", args=["boom"]).id for _ in range(2)]
        for task_id in failed:
            wait_for(lambda t=task_id: history.failure(t) is not None, 60, "the failure to be kept")
        outcome = adapter.retry_group(failed, per_second=0)
        assert sorted(outcome["retried"]) == sorted(failed) and not outcome["errors"], outcome
        for new_id in outcome["retried"].values():
            wait_for(lambda t=new_id: history.failure(t) is not None, 60, "the signed retry to run (and fail again)")
        assert not set(outcome["retried"].values()) & set(dead_reasons(broker_url))
    finally:
        adapter.close()
        app.close()
        worker.close()


def test_console_run_now_of_a_signed_eta_task_runs_it(broker_url: str, tmp_path: Path) -> None:
    """ "Run now" clears the eta header, so the console must sign the message again for it to run."""
    from tqctl.tui.adapter import Adapter

    counter = counter_url(broker_url)
    worker = WorkerProcess(
        broker_url,
        ["-P", "threads", "-n", "eta@%h"],
        tmp_path / "worker.log",
        {"FAULT_COUNTER_URL": counter, **WORKER_KEYS},
        app="tests.apps.faults",
    )
    app = client(broker_url, {"k2": K2}, "k2")
    adapter = Adapter(broker_url, app=app)
    try:
        worker.wait_ready(60)
        task_id = app.send_task(COUNT, countdown=3600).id
        wait_for(
            lambda: redis.Redis.from_url(f"unix://{urlsplit(broker_url).path}").zcard("tqctl.delayed") == 1,
            60,
            "the ETA task to be parked",
        )
        adapter.run_eta_now(task_id)
        wait_for(lambda: faults.runs(counter).get(task_id) == 1, 60, "the task moved by run-now to run")
        assert task_id not in dead_reasons(broker_url)
    finally:
        adapter.close()
        app.close()
        worker.close()
