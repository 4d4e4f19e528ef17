"""Shared pytest fixtures.

Layout: the real-server part comes first (one private Redis-compatible server per session, from
``engine.bundled``). Other engineers add their fixtures below it, each part small and self-contained.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from engine import bundled
from engine.bundled import client_for, start_private

# -- real server ----------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def bundled_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Anything that falls back to the bundled broker (a command run without ``--broker``, an app
    with none) starts it in a temporary folder, never in the checkout, and it is stopped at the end."""
    path = str(tmp_path_factory.mktemp("bundled-state"))
    before = os.environ.get("TQCTL_STATE_DIR")
    os.environ["TQCTL_STATE_DIR"] = path  # inherited by every worker and CLI process a test starts
    yield path
    bundled.stop(path)
    if before is None:
        os.environ.pop("TQCTL_STATE_DIR", None)
    else:
        os.environ["TQCTL_STATE_DIR"] = before


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One private server (unix socket) for the session; stopped at the end, never shared."""
    with start_private(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the session server, emptied first so tests never see each other's keys."""
    client = client_for(redis_url, timeout=None)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


# -- transports ------------------------------------------------------------------------------

TRANSPORTS = ("redis", "amqp")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ``amqp_too`` that uses the ``transport`` fixture (``broker_url`` does) runs
    once on Redis and once on the private RabbitMQ; ids end ``[redis]`` / ``[amqp]``."""
    if "transport" in metafunc.fixturenames and metafunc.definition.get_closest_marker("amqp_too"):
        metafunc.parametrize("transport", TRANSPORTS, indirect=True)


# -- leak check -----------------------------------------------------------------------------

LEAK_GRACE_S = 5.0  # what is stopping (a joined thread's last step, a reaped child) gets this long


def _child_pids() -> set[int]:
    """Children of every thread of this process; a scan of /proc where the kernel has no
    ``task/*/children`` files (CONFIG_PROC_CHILDREN)."""
    me = os.getpid()
    try:
        pids: set[int] = set()
        for tid in os.listdir(f"/proc/{me}/task"):
            with open(f"/proc/{me}/task/{tid}/children", "rb") as fh:
                pids.update(int(pid) for pid in fh.read().split())
        return pids
    except FileNotFoundError:
        pass
    found = set()
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
            if int(stat[stat.rindex(b")") + 2 :].split()[1]) == me:
                found.add(int(name))
        except (OSError, ValueError, IndexError):  # not a process, or it exited while we looked
            continue
    return found


def _children() -> dict[int, str]:
    """This process's live child processes (zombies are dead already): pid -> command line."""
    found = {}
    for pid in _child_pids():
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
            if stat[stat.rindex(b")") + 2 :].split()[0] == b"Z":
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                found[pid] = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError, IndexError):  # it exited while we looked
            continue
    return found


def _threads() -> set[threading.Thread]:
    # A _DummyThread stands for a thread threading did not start (C code); it never leaves the list.
    return {t for t in threading.enumerate() if t.is_alive() and not isinstance(t, threading._DummyThread)}


def _leaks(threads: set[threading.Thread], children: dict[int, str]) -> list[str]:
    new_threads = sorted(_threads() - threads, key=lambda t: t.name)
    new_children = {pid: cmd for pid, cmd in _children().items() if pid not in children}
    return [f"thread {t.name!r} ({'daemon' if t.daemon else 'non-daemon'})" for t in new_threads] + [
        f"child process {pid}: {cmd[:200]}" for pid, cmd in sorted(new_children.items())
    ]


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a thread or a child process behind. Autouse, so it is set up before
    the test's other function-scoped fixtures and checks after their teardown; session- and
    module-scoped fixtures (the private server) are set up before it, so they count as before.
    The session's RabbitMQ is started on demand, so an AMQP run starts it before looking."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("transport") == "amqp":
        request.getfixturevalue("rabbitmq")
    threads, children = _threads(), _children()
    yield
    deadline = time.monotonic() + LEAK_GRACE_S
    while (leaks := _leaks(threads, children)) and time.monotonic() < deadline:
        time.sleep(0.02)
    if leaks:
        pytest.fail("left running after the test: " + "; ".join(leaks), pytrace=False)


# -- process-id lookups ----------------------------------------------------------------------
@pytest.fixture
def getpid_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each ``os.getpid()`` from now on, counted (one entry a call; it still answers): a hot path
    that asks the system for the pid each time shows here. ``clear()`` it after a warm-up."""
    asked: list[int] = []
    real = os.getpid

    def counted() -> int:
        asked.append(1)
        return real()

    monkeypatch.setattr(os, "getpid", counted)
    return asked
