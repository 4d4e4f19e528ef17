"""One socket to one Redis server: connect (TCP, TLS or a Unix socket), hand-shake, send packed
commands, read replies with hiredis's C parser.

This is the engine's own client rather than redis-py because of what importing redis-py costs a
worker: it loads its asyncio, cluster and module-command layers (about 20 MB of a 47 MB idle
``-c 2`` worker tree, and 120 ms of start-up) for the few dozen commands the engine sends.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import hiredis

from engine import forks
from engine.resp.errors import (
    AuthenticationError,
    BusyLoadingError,
    ConnectionError,
    RedisError,
    ResponseError,
    TimeoutError,
    reply_error,
)

READ_SIZE = 16 * 1024


@dataclass(frozen=True)
class Settings:
    """Where a connection goes and how: what a URL and the app's options say, once parsed."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None  # a Unix socket instead of host and port
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: dict[str, Any] | None = None  # ssl_* keys (``redisconn.SSL_KEYS``); None is plain TCP
    # A reply that never comes (a dropped link, a proxy that swallowed it) ends in a timeout the
    # caller retries, as redis-py's 5 s default does; blocking commands wait in shorter slices.
    socket_timeout: float | None = 5.0
    socket_connect_timeout: float | None = 5.0
    socket_keepalive: bool = True
    health_check_interval: float = 0
    client_name: str | None = None
    read_size: int = READ_SIZE
    decode_responses: bool = False  # replies as str (UTF-8), as redis-py's option of that name

    def with_address(self, host: str, port: int) -> Settings:
        return replace(self, host=host, port=port, path=None)

    def where(self) -> str:
        return self.path if self.path else f"{self.host}:{self.port}"


Locate = Callable[[], tuple[str, int]]


class Connection:
    """A socket and its reply parser, made in one process and used by one thread at a time.

    ``locate``, when given, names the address afresh at every connect (a sentinel's primary)."""

    def __init__(self, settings: Settings, locate: Locate | None = None) -> None:
        self.settings = settings
        self.locate = locate
        self._sock: socket.socket | None = None
        self._reader: Any = None
        self.pid = 0
        self.next_health_check = 0.0

    # -- connecting ---------------------------------------------------------------------------
    @property
    def sock(self) -> socket.socket | None:
        return self._sock

    @property
    def reader(self) -> Any:
        return self._reader

    def connect(self) -> None:
        if self._sock is not None:
            return
        settings = self.settings
        if self.locate is not None:
            settings = settings.with_address(*self.locate())
        try:
            sock = _open(settings)
        except OSError as exc:
            raise ConnectionError(connect_error(settings, exc)) from None
        self._sock, self._reader, self.pid = sock, new_reader(settings), forks.pid
        self.next_health_check = time.monotonic() + settings.health_check_interval
        try:
            self._handshake(settings)
        except BaseException:
            self.disconnect()
            raise

    def _handshake(self, settings: Settings) -> None:
        commands = handshake(settings)
        if not commands:
            return
        self.send_packed_command(b"".join(hiredis.pack_command(c) for c in commands), check_health=False)
        for command in commands:
            try:
                self.read_response()
            except ResponseError as exc:
                if command[0] == "AUTH":
                    raise AuthenticationError(str(exc)) from None
                raise

    def disconnect(self) -> None:
        sock, self._sock, self._reader = self._sock, None, None
        if sock is None:
            return
        if self.pid == forks.pid:  # a forked child must not shut the parent's socket down
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            sock.close()
        except OSError:
            pass

    # -- sending ------------------------------------------------------------------------------
    def send_packed_command(self, command: bytes | Iterable[bytes], check_health: bool = True) -> None:
        if self._sock is None:
            self.connect()
        elif check_health and self.settings.health_check_interval:
            self._check_health()
        sock = self._sock
        assert sock is not None
        data = command if isinstance(command, bytes) else b"".join(command)
        try:
            sock.sendall(data)
        except TimeoutError_ as exc:
            self.disconnect()
            raise TimeoutError("Timeout writing to socket") from exc
        except OSError as exc:
            self.disconnect()
            raise ConnectionError(f"Error {exc.errno} while writing to socket. {exc.strerror}.") from None
        except BaseException:
            self.disconnect()  # cut off mid-command: the stream is out of step
            raise

    def send_command(self, *args: Any, check_health: bool = True) -> None:
        self.send_packed_command(pack(args), check_health=check_health)

    def _check_health(self) -> None:
        """A PING when the connection has been quiet longer than the interval: a socket a
        firewall dropped is found here, not by the command the caller cares about."""
        if time.monotonic() < self.next_health_check:
            return
        try:
            self.send_packed_command(PING, check_health=False)
            if self.read_response() not in (b"PONG", "PONG"):
                raise ConnectionError("Bad response from PING health check")
        except (ConnectionError, TimeoutError):
            self.disconnect()
            self.connect()

    # -- reading ------------------------------------------------------------------------------
    def read_response(self, timeout: float | None = None) -> Any:
        """The next reply; an error reply is raised. ``timeout`` bounds this read only."""
        reader, sock = self._reader, self._sock
        if reader is None or sock is None:
            raise ConnectionError("Connection closed by server.")
        try:
            reply = reader.gets()
            if reply is False:
                reply = self._read_more(reader, sock, timeout)
        except hiredis.ProtocolError as exc:
            self.disconnect()
            raise ConnectionError(f"Protocol error from {self.settings.where()}: {exc}") from None
        interval = self.settings.health_check_interval
        if interval:
            self.next_health_check = time.monotonic() + interval
        if isinstance(reply, RedisError):
            if isinstance(reply, BusyLoadingError | ConnectionError):
                self.disconnect()
            raise reply
        return reply

    def _read_more(self, reader: Any, sock: socket.socket, timeout: float | None) -> Any:
        if timeout is not None:
            sock.settimeout(timeout)
        size = self.settings.read_size
        try:
            while True:
                data = sock.recv(size)
                if not data:
                    raise ConnectionError("Connection closed by server.")
                reader.feed(data)
                reply = reader.gets()
                if reply is not False:
                    return reply
        except TimeoutError_ as exc:
            self.disconnect()
            raise TimeoutError("Timeout reading from socket") from exc
        except ConnectionError:
            self.disconnect()
            raise
        except OSError as exc:
            self.disconnect()
            raise ConnectionError(f"Error while reading from {self.settings.where()} : {exc}") from None
        except BaseException:
            self.disconnect()
            raise
        finally:
            if timeout is not None and self._sock is not None:
                self._sock.settimeout(self.settings.socket_timeout)

    def can_read(self, timeout: float = 0) -> bool:
        """Whether a reply is waiting (or the server hung up) within ``timeout`` seconds."""
        if self._sock is None:
            self.connect()
        sock, reader = self._sock, self._reader
        assert sock is not None
        if reader.has_data() or (hasattr(sock, "pending") and sock.pending()):
            return True
        try:
            ready, _, _ = select.select([sock], [], [], timeout)
        except (OSError, ValueError) as exc:
            self.disconnect()
            raise ConnectionError(f"Error while reading from {self.settings.where()}: {exc}") from None
        return bool(ready)

    def __repr__(self) -> str:
        return f"<Connection {self.settings.where()} db={self.settings.db}>"


TimeoutError_ = socket.timeout


def handshake(settings: Settings) -> list[tuple[Any, ...]]:
    """What a new connection sends first: AUTH, SELECT, CLIENT SETNAME, as its settings ask."""
    commands: list[tuple[Any, ...]] = []
    if settings.password is not None:
        user = (settings.username,) if settings.username else ()
        commands.append(("AUTH", *user, settings.password))
    if settings.db:
        commands.append(("SELECT", settings.db))
    if settings.client_name:
        commands.append(("CLIENT", "SETNAME", settings.client_name))
    return commands


PING = b"*1\r\n$4\r\nPING\r\n"


def pack(args: Iterable[Any]) -> bytes:
    """One command in RESP; ``None`` or a nested list is refused before anything is sent."""
    try:
        return hiredis.pack_command(tuple(args))
    except TypeError as exc:
        from engine.resp.errors import DataError

        raise DataError(f"invalid argument in a Redis command: {exc}") from None


def new_reader(settings: Settings) -> Any:
    if settings.decode_responses:
        return hiredis.Reader(replyError=reply_error, encoding="utf-8")
    return hiredis.Reader(replyError=reply_error)


def _open(settings: Settings) -> socket.socket:
    if settings.path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(settings.socket_connect_timeout)
        try:
            sock.connect(settings.path)
        except BaseException:
            sock.close()
            raise
    else:
        sock = socket.create_connection((settings.host, settings.port), timeout=settings.socket_connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if settings.socket_keepalive:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if settings.tls is not None:
            sock = _wrap_tls(sock, settings)
    sock.settimeout(settings.socket_timeout)
    return sock


def _wrap_tls(sock: socket.socket, settings: Settings) -> socket.socket:
    context = tls_context(settings)
    try:
        return context.wrap_socket(sock, server_hostname=settings.host)
    except BaseException:
        sock.close()
        raise


def tls_context(settings: Settings) -> Any:
    """TLS as Celery's ``broker_use_ssl`` asks. ``ssl`` is imported only here: OpenSSL's set-up
    is a few MB a process that a plain-TCP worker does not need."""
    import ssl

    tls = settings.tls or {}
    reqs = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL}.get(str(tls.get("ssl_cert_reqs")), ssl.CERT_REQUIRED)
    context = ssl.create_default_context(cafile=tls.get("ssl_ca_certs"), capath=tls.get("ssl_ca_path"))
    check = tls.get("ssl_check_hostname")
    context.check_hostname = bool(check) if check is not None and reqs != ssl.CERT_NONE else False
    if check is None and reqs == ssl.CERT_REQUIRED:
        context.check_hostname = True
    context.verify_mode = reqs
    if tls.get("ssl_certfile"):
        context.load_cert_chain(tls["ssl_certfile"], tls.get("ssl_keyfile"))
    return context


def connect_error(settings: Settings, exc: OSError) -> str:
    where = settings.where()
    if isinstance(exc, socket.timeout):
        return f"Timeout connecting to {where}."
    code = exc.errno if exc.errno is not None else (exc.args[0] if exc.args else "")
    reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc))
    if code == errno.ENOENT and settings.path:
        reason = "No such file or directory"
    return f"Error {code} connecting to {where}. {reason}."
