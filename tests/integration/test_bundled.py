"""The bundled broker against real server processes: start, share, persist, fall back, clean up.

Every server started here is stopped by the ``state_dirs`` fixture, pass or fail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import kombu
import pytest
import redis
from typer.testing import CliRunner

from engine import bundled
from engine.exceptions import BrokerUnavailable
from tqctl.commands.broker import app

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MakeDir = Callable[..., Path]


@pytest.fixture
def state_dirs() -> Iterator[MakeDir]:
    """Hands out state folders and stops whatever server ends up in them. They live in a short
    folder of /tmp, not tmp_path, which under pytest-xdist is too long for a unix socket path."""
    made: list[Path] = []
    root = Path(tempfile.mkdtemp(prefix="tqb"))

    def make(*parts: str) -> Path:
        made.append(root.joinpath(*parts, ".tqctl"))
        return made[-1]

    yield make
    for path in made:
        bundled.stop(path)
    shutil.rmtree(root, ignore_errors=True)


def socket_url(state_dir: Path) -> str:
    path = state_dir / "redis.sock"
    assert bundled.socket_path_fits(path), f"tmp path too long for this test: {path}"
    return f"redis+socket://{quote(str(path))}"


def test_first_call_starts_and_announces_a_second_call_reuses_silently(
    state_dirs: MakeDir, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir = state_dirs()
    url = bundled.ensure_running(state_dir)
    first = bundled.status(state_dir)
    lines = capsys.readouterr().err.splitlines()

    assert url == socket_url(state_dir) == first.url
    assert first.running and first.version and first.version.startswith(("valkey ", "redis "))
    assert lines == [f"tqctl: started bundled broker ({first.version}) in {state_dir} at {url}"]

    assert bundled.ensure_running(state_dir) == url
    assert capsys.readouterr().err == ""
    assert bundled.status(state_dir).pid == first.pid


def test_two_racing_processes_start_one_server_that_outlives_them(state_dirs: MakeDir) -> None:
    state_dir = state_dirs()
    code = "import sys; from engine.bundled import ensure_running; print(ensure_running(sys.argv[1]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(state_dir)],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=30) for proc in procs]

    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert {out.strip() for out, _ in outputs} == {socket_url(state_dir)}
    assert sum("started bundled broker" in err for _, err in outputs) == 1
    current = bundled.status(state_dir)
    assert current.running, "the server must survive the processes that started it"
    with bundled.client_for(current.url or "") as client:
        assert client.info("server")["process_id"] == current.pid


@pytest.mark.parametrize("name", ["my state dir", 'odd "quoted" \\ dir'])
def test_state_folder_path_with_spaces_and_quotes_works(state_dirs: MakeDir, name: str) -> None:
    state_dir = state_dirs(name)
    url = bundled.ensure_running(state_dir, announce=None)

    assert url == socket_url(state_dir)
    assert (state_dir / "redis.sock").is_socket()
    with bundled.client_for(url) as client:
        assert client.config_get("dir")["dir"] == str(state_dir)
    with kombu.Connection(url) as conn:  # the workers reach it through kombu
        assert conn.default_channel.client.ping()


def test_socket_path_over_107_bytes_falls_back_to_loopback_tcp(state_dirs: MakeDir) -> None:
    state_dir = state_dirs(*["deep-directory-level"] * 6)
    assert not bundled.socket_path_fits(state_dir / "redis.sock")

    url = bundled.ensure_running(state_dir, announce=None)

    assert url.startswith("redis://127.0.0.1:") and url.endswith("/0")
    with bundled.client_for(url) as client:
        assert client.ping()
        assert client.config_get("bind")["bind"] == "127.0.0.1"
    assert not (state_dir / "redis.sock").exists()
    assert bundled.status(state_dir).url == url


def test_data_persists_across_stop_and_start(state_dirs: MakeDir) -> None:
    state_dir = state_dirs()
    url = bundled.ensure_running(state_dir, announce=None)
    first_pid = bundled.status(state_dir).pid
    with bundled.client_for(url) as client:
        client.set("tqctl:durable", "still here")

    assert bundled.stop(state_dir) is True
    assert not bundled.status(state_dir).running
    assert bundled.stop(state_dir) is False

    url = bundled.ensure_running(state_dir, announce=None)
    assert bundled.status(state_dir).pid != first_pid
    with bundled.client_for(url) as client:
        assert client.get("tqctl:durable") == b"still here"


def test_durability_settings_are_in_effect(state_dirs: MakeDir) -> None:
    state_dir = state_dirs()
    url = bundled.ensure_running(state_dir, announce=None)
    with bundled.client_for(url) as client:
        config = client.config_get("*")

    assert config["maxmemory-policy"] == "noeviction"
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["port"] == "0"
    assert config["unixsocketperm"] == "700"
    assert stat.S_IMODE((state_dir / "redis.sock").stat().st_mode) == 0o700
    assert (state_dir / "appendonlydir").is_dir()


def _stale_record(state_dir: Path, pid: int) -> None:
    """A record as a crashed server leaves it: server.json, a pid file and a dead socket file."""
    state_dir.mkdir(parents=True)
    binary = str(bundled.resolve_server_binary())
    record = {"pid": pid, "url": socket_url(state_dir), "binary": binary}
    (state_dir / "server.json").write_text(json.dumps(record))
    (state_dir / "server.pid").write_text(f"{pid}\n")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(state_dir / "redis.sock"))  # left behind on close, nobody listening


def test_stale_record_of_a_dead_process_is_replaced(state_dirs: MakeDir) -> None:
    state_dir = state_dirs()
    dead = subprocess.Popen(["true"])
    dead.wait()
    _stale_record(state_dir, dead.pid)
    lines: list[str] = []

    url = bundled.ensure_running(state_dir, announce=lines.append)

    assert len(lines) == 1 and "started bundled broker" in lines[0]
    current = bundled.status(state_dir)
    assert current.running and current.pid != dead.pid and current.url == url


@pytest.mark.skipif(not Path("/proc/self/exe").exists(), reason="needs /proc to tell pids apart")
def test_stale_record_naming_a_recycled_live_pid_is_replaced(state_dirs: MakeDir) -> None:
    state_dir = state_dirs()
    _stale_record(state_dir, os.getpid())  # alive, but not a server: never reused nor killed

    bundled.ensure_running(state_dir, announce=None)

    assert bundled.status(state_dir).pid != os.getpid()


def test_a_server_that_cannot_start_gives_the_log_tail(state_dirs: MakeDir, tmp_path: Path) -> None:
    broken = tmp_path / "broken-server"
    broken.write_text("#!/bin/sh\necho 'FATAL: cannot open config' >&2\nexit 3\n")
    broken.chmod(0o755)

    with pytest.raises(BrokerUnavailable) as info:
        bundled.ensure_running(state_dirs(), server_path=str(broken), announce=None)

    assert "exited with code 3" in str(info.value)
    assert "FATAL: cannot open config" in str(info.value)


def test_private_server_over_tcp_is_stopped_by_its_context(tmp_path: Path) -> None:
    with bundled.start_private(tmp_path / "private", unix_socket=False) as server:
        assert server.url.startswith("redis://127.0.0.1:")
        with bundled.client_for(server.url) as client:
            assert client.ping()
    assert not bundled.status(tmp_path / "private").running


def test_cli_start_status_stop_json_and_exit_codes(state_dirs: MakeDir) -> None:
    runner = CliRunner()
    folder = str(state_dirs())

    def run(*args: str) -> tuple[int, dict[str, object]]:
        result = runner.invoke(app, [*args, "--json"], env={"TQCTL_STATE_DIR": folder})
        return result.exit_code, json.loads(result.stdout)

    code, started = run("start")
    assert code == 0 and started["running"] is True and started["started"] is True
    assert started["state_dir"] == folder and started["url"] == socket_url(Path(folder))
    code, again = run("start")
    assert code == 0 and again["started"] is False and again["pid"] == started["pid"]
    code, current = run("status")
    assert code == 0 and current["pid"] == started["pid"]
    assert set(current) == {"running", "state_dir", "url", "pid", "binary", "version"}
    assert run("stop") == (0, {"was_running": True, "state_dir": folder})
    code, current = run("status")
    assert code == 1 and current["running"] is False and current["url"] is None
    assert run("stop") == (0, {"was_running": False, "state_dir": folder})


def test_cli_start_with_a_bad_server_path_fails_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["start", "--state-dir", str(tmp_path / ".tqctl"), "--server-path", "/nonexistent"]
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("tqctl: error: ") and result.stderr.count("\n") == 1


@pytest.mark.parametrize("round_", [1, 2])
def test_shared_fixture_gives_an_empty_private_server(redis_client: redis.Redis, redis_url: str, round_: int) -> None:
    assert redis_client.dbsize() == 0  # flushed, though the previous round left a key
    redis_client.set("tqctl:fixture", round_)
    assert redis_url.startswith(("redis+socket://", "redis://127.0.0.1:"))
    assert redis_client.config_get("appendonly")["appendonly"] == "yes"
