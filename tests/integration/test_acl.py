"""A Redis ACL user with only what tqctl needs: a worker (prefork, beat embedded), a client and the
scripted commands run as that user on a server whose default user is off. The rule is the one
README documents; it was found by running everything and narrowing until nothing was refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from engine import App, chord
from tests.integration.harness import ROOT, WorkerProcess
from tests.integration.servers import Server, free_port, valkey_binary, wait_until

pytestmark = pytest.mark.integration

# Workers, clients, beat and the scripted commands (the console also reads INFO server: add +info);
# README's line, word for word (+expire is for chords).
COMMANDS = (
    "+ping +hello +client|setinfo +get +set +setex +del +expire +pexpire +pttl +hget +hset +hsetnx +hdel +hexists "
    "+hkeys +hgetall +hmget +hlen +hvals +hincrby +lpush +rpush +rpop +lpop +brpop +blmove +lpos +llen "
    "+lrange +lindex +ltrim +sadd +srem +smembers +zadd +zincrby +zrem +zcard +zrange +zrangebyscore "
    "+zrevrange +zremrangebyscore +zremrangebyrank +zscan +scan +publish +subscribe +unsubscribe +psubscribe +evalsha "
    "+script|load +multi +exec +wait +time"
)
ACL = f"user tqctl on >s3cret-pw resetkeys ~* resetchannels &* -@all {COMMANDS}"


@pytest.fixture
def acl_server(tmp_path: Path) -> Iterator[Server]:
    yield from _server(tmp_path, ACL)


@pytest.fixture
def no_expire_server(tmp_path: Path) -> Iterator[Server]:
    """README's user without +expire: a chord's join is refused."""
    yield from _server(tmp_path, ACL.replace(" +expire ", " "))


def _server(tmp_path: Path, acl: str) -> Iterator[Server]:
    server = Server(
        tmp_path / "acl", free_port(), [acl, "user admin on >admin-pw ~* &* +@all", "user default off"], valkey_binary()
    ).start()
    try:
        wait_until(lambda: server.client(username="admin", password="admin-pw").ping(), 30, "the server")
        yield server
    finally:
        server.kill()


def test_worker_client_chord_beat_and_status_as_readmes_acl_user(acl_server: Server, tmp_path: Path) -> None:
    """Before: the test's user lacked README's +expire and ran no chord, so a chord under README's
    rule was never tried (without +expire its header ends with an internal error). Now the user is
    README's line and a chord's header and body run to a result, nothing refused."""
    url = f"redis://tqctl:s3cret-pw@127.0.0.1:{acl_server.port}/0"
    worker = WorkerProcess(url, ["-c", "2", "-B", "-n", "acl@%h"], tmp_path / "worker.log", {})
    app = App("aclclient", broker=url)
    admin = acl_server.client(username="admin", password="admin-pw")
    try:
        worker.wait_ready(60)
        assert app.send_task("tests.apps.shop.add", args=[2, 3]).get(timeout=60) == 5
        assert app.send_task("tests.apps.shop.add", args=[1, 1], countdown=0.5).get(timeout=60) == 2
        header = [app.signature("tests.apps.shop.add", (i, i)) for i in range(3)]
        body = app.signature("tests.apps.shop.add", ([6],))  # the header's results + [6]
        assert chord(header)(body).get(timeout=60) == [0, 2, 4, 6]  # a chord needs +expire
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TQCTL_BROKER": url}
        for args in (
            ["status", "--timeout", "3"],
            ["queues"],
            ["workers", "--listen", "1.5"],
            ["tasks"],
            ["dead", "ls"],
            ["beat", "ls", "-A", "tests.apps.shop"],
        ):
            done = subprocess.run(
                [sys.executable, "-m", "tqctl", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, (args, done.stderr)
        assert (
            "acl@"
            in subprocess.run(
                [sys.executable, "-m", "tqctl", "status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
            ).stdout
        )
        assert admin.acl_log() == [], admin.acl_log()  # nothing was refused along the way
        assert "NOPERM" not in worker.log()
        user = redis.Redis(host="127.0.0.1", port=acl_server.port, username="tqctl", password="s3cret-pw")
        for denied in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("SHUTDOWN",)):
            with pytest.raises(redis.exceptions.NoPermissionError):
                user.execute_command(*denied)
    finally:
        app.close()
        worker.close()


def test_a_chord_refused_by_the_acl_fails_with_the_servers_reason(no_expire_server: Server, tmp_path: Path) -> None:
    """Before: a chord whose user lacks +expire failed with only "internal error:
    server:ResponseError" (redis-py's repr of the error), in the stored result and the worker's
    log. Now both carry the server's text: "... no permissions to run the 'expire' command ..."."""
    url = f"redis://tqctl:s3cret-pw@127.0.0.1:{no_expire_server.port}/0"
    worker = WorkerProcess(url, ["-c", "1", "-n", "noexpire@%h"], tmp_path / "worker.log", {})
    app = App("aclclient", broker=url)
    try:
        worker.wait_ready(60)
        header = [app.signature("tests.apps.shop.add", (i, i)) for i in range(2)]
        result = chord(header)(app.signature("tests.apps.shop.add", ([6],)))
        with pytest.raises(Exception, match="no permissions to run the 'expire' command") as failed:
            result.get(timeout=60)
        assert "server:ResponseError" not in str(failed.value)
        unrecorded = [line for line in worker.log().splitlines() if "outcome could not be recorded" in line]
        assert unrecorded, worker.log()  # logged before the failure is stored
        assert all("(internal_error): ResponseError(" in line for line in unrecorded), unrecorded
        assert all("no permissions to run the 'expire' command" in line for line in unrecorded), unrecorded
    finally:
        app.close()
        worker.close()
