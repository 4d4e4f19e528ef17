"""The ops commands' usage errors (exit 2), their parsing helpers, and a closed broker port (exit 1).

Usage errors must be found before any connection is tried, so ``TQCTL_BROKER`` points at a closed
port here: a command that connected first would exit 1, not 2.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from tqctl.cli import app
from tqctl.commands import failures
from tqctl.commands.common import destinations, iso, node_rows, parse_signal, parse_since
from tqctl.commands.ops import canonical, parse_control_args

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def closed_url(monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"redis://admin:s3cret-pw@127.0.0.1:{closed_port()}/0"
    monkeypatch.setenv("TQCTL_BROKER", url)
    return url


USAGE_ERRORS = [
    ["inspect", "my_custom", "not-key-value"],
    ["inspect", "query-task"],
    ["inspect", "stats", "extra"],
    ["control", "my_custom", "=1"],
    ["control", "pool_grow", "two"],
    ["control", "pool-grow", "1", "2"],
    ["control", "autoscale", "4"],
    ["control", "rate_limit", "tasks.add", "fast"],
    ["control", "time-limit", "tasks.add"],
    ["control", "terminate", "SIGNOPE", "some-id"],
    ["control", "terminate", "SIGKILL"],
    ["control", "revoke"],
    ["call", "tasks.add", "--args", "[1,"],
    ["call", "tasks.add", "--args", "{}"],
    ["call", "tasks.add", "--kwargs", "[]"],
    ["call", "tasks.add", "--eta", "tomorrow"],
    ["call", "tasks.add", "--priority", "12"],
    ["call"],
    ["revoke"],
    ["revoke", "some-id", "--signal", "NOPE"],
    ["retry"],
    ["retry", "some-id", "--failed"],
    ["retry", "--failed", "--rate", "fast"],
    ["tasks", "--since", "yesterday"],
    ["tasks", "--state", "BOGUS"],  # not an empty list, as if nothing had that state
    ["tail", "--state", "failed"],  # the event is task-failed; the state is FAILURE
    ["purge"],
    ["task"],
    ["result"],
    ["status", "--no-such-option"],
    # Values that used to be accepted, or failed with exit 1 and Python's own words:
    ["control", "autoscale", "1", "2"],  # MAX < MIN
    ["control", "add-consumer", ""],
    ["control", "cancel-consumer", " "],
    ["control", "pool-grow", "0"],
    ["control", "pool-shrink", "-1"],
    ["control", "time-limit", "tasks.add", "nan"],
    ["control", "drain", "inf"],
    ["call", "tasks.add", "--queue", ""],
    ["call", "tasks.add", "--countdown", "nan"],  # ValueError: cannot convert float NaN to integer
    ["call", "tasks.add", "--countdown", "inf"],
    ["call", "tasks.add", "--countdown", "1e20"],  # OverflowError
    ["call", "tasks.add", "--expires", "1e20"],
    ["status", "-d", ""],
    ["inspect", "stats", "-d", ","],
    ["status", "--timeout", "inf"],  # OverflowError
    ["status", "--timeout", "nan"],
    ["tasks", "--timeout", "1e300"],
    ["tasks", "--limit", "99999999999999999999"],  # broker error: value is not an integer or out of range
    ["tail", "--for", "nan"],
    ["queues", "--sample", "inf"],
    ["dead", "requeue"],  # no ids and no --all
    ["dead", "delete"],
    ["dead", "show", ""],
    ["dead", "requeue", " ", "--yes"],
]


@pytest.mark.parametrize("argv", USAGE_ERRORS, ids=[" ".join(a) for a in USAGE_ERRORS])
def test_usage_errors_exit_2_before_connecting(closed_url: str, argv: list[str]) -> None:
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "s3cret" not in result.output


COMMANDS = [
    "status",
    "inspect",
    "control",
    "workers",
    "queues",
    "purge",
    "tasks",
    "task",
    "tail",
    "call",
    "result",
    "retry",
    "revoke",
    "failures",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_naming_its_options(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "--json" in result.output and "--broker" in result.output


# Commands that reach the broker itself (not only the result backend), on either transport.
BROKER_COMMANDS = [
    ["status"],
    ["inspect", "stats"],
    ["control", "pool_grow", "1"],
    ["workers"],
    ["queues"],
    ["purge", "celery", "--yes"],
]


@pytest.mark.parametrize(
    "argv",
    [
        *BROKER_COMMANDS,
        ["tasks"],
        ["failures"],
        ["revoke", "some-id", "--yes"],
        ["call", "tasks.add"],
        ["tail", "--for", "1"],
    ],
)
def test_a_closed_broker_port_gives_one_masked_line_and_exit_1(closed_url: str, argv: list[str]) -> None:
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tqctl: error: cannot reach broker at 127.0.0.1:")
    assert "s3cret" not in result.output and "admin:****@" in lines[0]


@pytest.mark.parametrize("argv", BROKER_COMMANDS)
def test_a_closed_rabbitmq_port_gives_the_same_one_line(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> None:
    monkeypatch.setenv("TQCTL_BROKER", f"amqp://admin:s3cret-pw@127.0.0.1:{closed_port()}//")
    result = CliRunner().invoke(app, [*argv, "--timeout", "2"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tqctl: error: "), lines
    assert "cannot reach broker at 127.0.0.1:" in lines[0], "the same words as on Redis"
    assert "Error: " not in lines[0], "an exception's class name instead of what failed"
    assert "s3cret" not in result.output and "admin:****@" in lines[0]


@pytest.fixture
def silent_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) but never answers: a hung broker."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        url = f"redis://:hush-pw@127.0.0.1:{sock.getsockname()[1]}/0"
        monkeypatch.setenv("TQCTL_BROKER", url)
        yield url


@pytest.mark.parametrize(
    "argv",
    [
        ["tasks"],
        ["task", "some-id"],
        ["failures"],
        ["purge", "celery", "--yes"],
        ["call", "tasks.add"],
        ["retry", "--failed", "--yes"],
        ["status"],
        ["inspect", "stats"],
        ["control", "heartbeat"],
        ["revoke", "some-id", "--yes"],
    ],
)
def test_a_broker_that_never_answers_is_given_up_on_after_timeout(silent_url: str, argv: list[str]) -> None:
    result = CliRunner().invoke(app, [*argv, "--timeout", "0.3"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tqctl: error: cannot reach broker at 127.0.0.1:"), lines
    assert "hush-pw" not in result.output and "Timeout" in lines[0]


def test_call_against_a_broker_that_never_answers_gives_up_at_its_timeout(silent_url: str) -> None:
    """Each read of one send waited its own timeout (the result subscription's 5 s, the publish,
    its fallback, redis-py's retries): `call -t 10` took 25 s. Now the whole send ends at --timeout,
    which is what the line says (before the deadline, the first read still had 4 s to wait)."""
    result = CliRunner().invoke(app, ["call", "tasks.add", "--timeout", "1"])
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("tqctl: error: cannot reach broker at 127.0.0.1:") and "hush-pw" not in line
    assert line.endswith("Timeout: no reply within 1s")


def test_status_against_a_closed_port_as_a_real_process() -> None:
    port = closed_port()
    env = {**os.environ, "TQCTL_BROKER": f"redis://:topsecret@127.0.0.1:{port}/0", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "tqctl", "status", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,  # a hang guard, not a speed check
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and f"127.0.0.1:{port}" in proc.stderr
    assert "topsecret" not in proc.stderr and ":****@" in proc.stderr


BAD_INPUT = [
    (["worker", "--bogus"], "No such option: --bogus (try 'python -m tqctl worker -h')"),
    (["nosuchcmd"], "No such command 'nosuchcmd' (try 'python -m tqctl -h')"),
    (["bench", "-n", "abc"], "Invalid value for '-n' / '--tasks'"),
    # bench took these and ran on: a steady rate of inf/s, an idle of nan, a latency run without end
    (["bench", "--rate", "inf"], "Invalid value for '--rate'"),
    (["bench", "--idle", "nan"], "Invalid value for '--idle'"),
    (["bench", "--latency-seconds", "1e999"], "Invalid value for '--latency-seconds'"),
    (["bench", "--io-concurrency", "-1"], "--io-concurrency applies only with --io"),
    (["health", "--timeout", "1e999"], "Invalid value for '--timeout' / '-t'"),  # waited for ever
    (["revoke"], "Missing argument 'task_ids' (try 'python -m tqctl revoke -h')"),
    (["status", "--timeout"], "Option '--timeout' requires an argument"),
    (["status", "--broker", "nonsense://x"], "unsupported broker URL scheme 'nonsense': use redis://, rediss://"),
    (["queues", "--broker", "nonsense://x"], "amqp://, amqps://, pyamqp://, sqs://"),  # (not Redis's alone)
    (["dead", "requeue"], "name dead-letter ids or pass --all"),
]


@pytest.mark.parametrize(("argv", "says"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_a_bad_flag_or_command_is_one_line_and_exit_2_from_the_real_program(argv: list[str], says: str) -> None:
    """What a user at a terminal gets: not Typer's boxed five-line message, one line naming the fix."""
    env = {**os.environ, "TQCTL_BROKER": f"redis://:topsecret@127.0.0.1:{closed_port()}/0", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "tqctl", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("tqctl: error: "), proc.stderr
    assert says in proc.stderr and "topsecret" not in proc.stderr


def test_version_is_one_line_and_touches_no_broker() -> None:
    """``tqctl --version`` (or ``-V`` before any command) answers at once, even with a dead broker."""
    env = {**os.environ, "TQCTL_BROKER": f"redis://:topsecret@127.0.0.1:{closed_port()}/0", "PYTHONPATH": str(ROOT)}
    for argv in (["--version"], ["-V", "status"]):
        proc = subprocess.run(
            [sys.executable, "-m", "tqctl", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
        )
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        assert re.fullmatch(
            r"tqctl \d+\.\d+\.\d+( from source)? \(Python 3\.\d+\.\d+, redis \S+, "
            r"kombu \S+, textual \S+\)\n",
            proc.stdout,
        ), proc.stdout


def test_a_dry_run_terminate_names_its_workers_then_its_tasks(closed_url: str) -> None:
    """The task id was listed under "to:", as if it were a worker."""
    for extra, to in (([], "every worker"), (["-d", "w1@h,w2@h"], "w1@h, w2@h")):
        result = CliRunner().invoke(app, ["control", "terminate", "SIGKILL", "abc", "def", "--dry-run", *extra])
        assert result.exit_code == 0, result.output
        head, *ids = result.stdout.splitlines()
        assert head.startswith("dry run: would send terminate {") and head.endswith(f"to {to}, for these tasks:")
        assert ids == ["  abc", "  def"]


def test_retry_rate_counts_the_intervals_between_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    """4 sends 0.5 s apart are 2/s (it said 2.66: 4 sends over the 1.5 s between the first and last)."""
    now = [1000.0]
    clock = SimpleNamespace(
        monotonic=lambda: now[0], time=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s)
    )
    monkeypatch.setattr(failures, "time", clock)  # sends take no time; the throttle's sleeps advance it
    history = SimpleNamespace(retry=lambda old, publish, sent_at: f"{old}-again")
    said: list[str] = []
    monkeypatch.setattr(failures, "note", said.append)
    doc = failures._republish(SimpleNamespace(history=history, publish=None), ["a", "b", "c", "d"], 2.0, True)
    assert doc["count"] == 4 and doc["elapsed_seconds"] == 1.5 and doc["rate_per_second"] == 2.0
    assert said[-1] == "retried 4/4 in 1.5s (2.0/s)", said  # the progress line too (it read 2.7/s)


# -- parsing helpers -------------------------------------------------------------------------------
def test_both_spellings_name_the_same_control_command() -> None:
    assert canonical("pool-grow") == canonical("pool_grow") == "pool_grow"
    assert parse_control_args("pool_grow", []) == {"n": 1}
    assert parse_control_args("pool_shrink", ["3"]) == {"n": 3}
    assert parse_control_args("autoscale", ["4", "1"]) == {"max": 4, "min": 1}
    assert parse_control_args("time_limit", ["t", "10"]) == {"task_name": "t", "hard": 10.0, "soft": None}
    assert parse_control_args("rate_limit", ["t", "10/s"]) == {"task_name": "t", "rate_limit": "10/s"}
    assert parse_control_args("drain", []) == {"timeout": 60.0}
    assert parse_control_args("terminate", ["kill", "a", "b"]) == {
        "task_id": ["a", "b"],
        "terminate": True,
        "signal": "SIGKILL",
    }


def test_parsers() -> None:
    assert destinations(" a@h , b@h,,") == ["a@h", "b@h"] and destinations("") is None
    assert parse_signal("9") == "SIGKILL" and parse_signal("term") == "SIGTERM"
    assert parse_since("10m", 1000.0) == 400.0 and parse_since("2h", 10_000.0) == 2800.0
    assert parse_since("1970-01-01T00:01:00Z", 0) == 60.0
    assert iso(0) == "1970-01-01T00:00:00+00:00" and iso(None) is None and iso("x") is None
    rows = node_rows([{"b@h": {"ok": "pong"}}, {"a@h": {"error": "nope"}}])
    assert rows == [
        {"name": "a@h", "ok": False, "reply": None, "error": "nope"},
        {"name": "b@h", "ok": True, "reply": {"ok": "pong"}, "error": None},
    ]


@pytest.mark.parametrize(
    "argv",
    [["status"], ["tasks"], ["demo"], ["broker", "start"], ["up", "-A", "tqctl.examples.shop", "--detach"]],
)
def test_a_state_folder_that_cannot_be_made_is_named_in_one_line(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file named ``.tqctl`` where the state folder goes: every command that needs the bundled
    broker (or, for demo and up, a folder for its logs) said ``FileExistsError: [Errno 17] File
    exists: '.tqctl'``. Now the line names the folder, why, and the way out; nothing starts."""
    monkeypatch.delenv("TQCTL_BROKER", raising=False)
    monkeypatch.delenv("TQCTL_STATE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tqctl").write_text("not a folder")
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert line == (
        f"tqctl: error: cannot use {tmp_path / '.tqctl'} as the state folder: a file of that name is in the way"
        " (choose another with --state-dir or TQCTL_STATE_DIR)"
    )
    assert (tmp_path / ".tqctl").read_text() == "not a folder"


def test_demo_with_a_broker_given_still_names_its_log_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a broker URL the demo starts no bundled broker, but its worker's log goes in the
    state folder: the same line, before any worker starts."""
    monkeypatch.setenv("TQCTL_BROKER", f"redis://127.0.0.1:{closed_port()}/0")
    monkeypatch.setenv("TQCTL_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "state").write_text("")
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"tqctl: error: cannot use {tmp_path / 'state'} as the state folder: a file of that name")


@pytest.mark.parametrize("argv", [["console"], []])
def test_the_console_on_sqs_says_why_it_does_not_open(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """It said "unsupported broker URL scheme 'sqs' … (use redis://, …)", as if SQS were unknown."""
    monkeypatch.setenv("TQCTL_BROKER", f"sqs://KEYID:sqs-secret@127.0.0.1:{closed_port()}")
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("tqctl: error: the console does not open on an SQS broker:") and "tqctl queues" in line
    assert "sqs-secret" not in result.output


@pytest.mark.parametrize(
    ("argv", "what"),
    [
        (["discard", "--failed", "--yes"], "the failure inbox (tasks, task, failures, retry, discard)"),
        (["revoke", "some-id", "--yes"], "revokes (stored, so that a restarted worker keeps them)"),
    ],
)
def test_rabbitmq_without_a_redis_backend_is_one_readable_line(
    argv: list[str], what: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It read "revoke from tqctl (…) on an AMQP broker is kept on …", discard's named "(tasks,
    task, retry, failures)", not discard, and both said "pass --backend", an option they lack."""
    monkeypatch.setenv("TQCTL_BROKER", f"amqp://guest:amqp-pw@127.0.0.1:{closed_port()}//")
    monkeypatch.delenv("TQCTL_BACKEND", raising=False)
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("tqctl: error: on an AMQP broker, ") and what in line
    assert "are kept on the Redis result backend: set TQCTL_BACKEND=redis://" in line and "amqp-pw" not in line
