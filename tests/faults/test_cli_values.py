"""Item 9 of issue 13: values the CLI used to accept (or crash on). Each runs the real ``tqctl``
program and must end with ONE line on stderr and exit 2 (usage error, README "Exit codes"), no
traceback, and before any connection: the broker here is a closed port, so a command that tried to
connect first would exit 1, and a worker that started would never exit at all.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.integration.harness import ROOT

DEEP = "[" * 50_000 + "]" * 50_000
LONG_ID = "a" * 120_000
APP = ["-A", "tests.apps.faults"]

CASES: list[tuple[str, list[str]]] = [
    ("worker-c-negative", ["worker", *APP, "-c", "-1"]),
    ("worker-c-huge", ["worker", *APP, "-c", "100000"]),
    ("worker-prefetch-negative", ["worker", *APP, "--prefetch-multiplier", "-5"]),
    ("worker-broker-empty", ["worker", *APP, "--broker", ""]),
    ("worker-broker-bad-port", ["worker", *APP, "--broker", "redis://127.0.0.1:99999/0"]),
    ("worker-backend-bad-db", ["worker", *APP, "--backend", "redis://127.0.0.1/abc"]),
    ("call-empty-name", ["call", ""]),
    ("call-deep-args", ["call", "tests.add", "--args", DEEP]),
    ("call-deep-kwargs", ["call", "tests.add", "--kwargs", '{"a": ' + DEEP + "}"]),
    ("call-queue-empty", ["call", "tests.add", "--queue", " "]),
    ("revoke-empty", ["revoke", ""]),
    ("revoke-not-an-id", ["revoke", "not a uuid!!"]),
    ("revoke-120k-id", ["revoke", LONG_ID]),
    ("task-120k-id", ["task", LONG_ID]),
    ("result-empty-id", ["result", ""]),
    ("retry-bad-id", ["retry", "x y"]),
    ("purge-empty", ["purge", ""]),
    ("status-timeout-negative", ["status", "--timeout", "-1"]),
    ("inspect-timeout-negative", ["inspect", "stats", "--timeout", "-1"]),
    ("tasks-limit-negative", ["tasks", "--limit", "-1"]),
    ("failures-limit-negative", ["failures", "--limit", "-1"]),
    ("tail-count-negative", ["tail", "--count", "-1"]),
    ("tail-for-negative", ["tail", "--for", "-1"]),
    ("queues-sample-negative", ["queues", "--sample", "-1"]),
    ("workers-listen-negative", ["workers", "--listen", "-1"]),
    ("result-timeout-negative", ["result", "some-id", "--timeout", "-1"]),
    ("status-bad-port", ["status", "--broker", "redis://127.0.0.1:99999/0"]),
    ("status-port-not-a-number", ["status", "--broker", "redis://127.0.0.1:abc/0"]),
    ("status-bad-db", ["status", "--broker", "redis://127.0.0.1/abc"]),
    ("status-broker-empty", ["status", "--broker", ""]),
    ("queues-broker-blank", ["queues", "--broker", "   "]),
    ("tasks-socket-bad-db", ["tasks", "--broker", "redis+socket:///tmp/x.sock?virtual_host=abc"]),
    ("dead-ls-broker-empty", ["dead", "ls", "--broker", ""]),
    ("dead-ls-limit-negative", ["dead", "ls", "--limit", "-1"]),
    ("beat-ls-bad-port", ["beat", "ls", "--broker", "redis://127.0.0.1:70000/0"]),
    ("console-broker-empty", ["--broker", ""]),
    ("console-bad-db", ["console", "--broker", "redis://127.0.0.1/x"]),
    ("up-broker-empty", ["up", "-A", "tests.apps.faults", "--broker", ""]),
    ("worker-queues-empty", ["worker", *APP, "-Q", ""]),
    ("worker-queues-empty-item", ["worker", *APP, "-Q", "celery,,high"]),
    ("worker-hostname-empty", ["worker", *APP, "-n", ""]),
    ("worker-metrics-port-negative", ["worker", *APP, "--metrics-port", "-1"]),
    ("worker-health-file-no-folder", ["worker", *APP, "--health-file", "/nonexistent/dir/x"]),
    ("broker-start-state-dir-empty", ["broker", "start", "--state-dir", ""]),
]
SAYS = {  # what the line must name, beyond being one line
    "worker-health-file-no-folder": "'/nonexistent/dir' does not exist",
    "broker-start-state-dir-empty": "--state-dir",
}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(("case", "argv"), CASES, ids=[c[0] for c in CASES])
def test_bad_value_is_one_line_and_exit_2(case: str, argv: list[str], tmp_path) -> None:
    env = {
        **os.environ,
        "TQCTL_BROKER": f"redis://:s3cret@127.0.0.1:{closed_port()}/0",
        "TQCTL_STATE_DIR": str(tmp_path / "state"),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("TQCTL_BACKEND", None)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tqctl", *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("still running after 30 s: the value was accepted")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("tqctl: error: "), done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr + done.stdout
    assert len(lines[0]) < 400, "the error line quotes the whole value"
    assert not (tmp_path / "state").exists(), "a bundled broker was started"
    assert SAYS.get(case, "") in lines[0]
    assert not list(tmp_path.iterdir()), "something was started in the current folder"
