"""Redis connections from Celery/kombu-style URLs, with errors that name the target safely."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from engine import forks, resp
from engine.config import mask_url, unreachable_line
from engine.exceptions import BrokerUnavailable, ImproperlyConfigured, one_line
from engine.resp.pool import Pool
from engine.resp.sentinel import FollowingConnection, PrimaryLocator
from engine.resp.url import settings_from, settings_from_url

REDIS_SCHEMES = ("redis", "rediss", "redis+socket", "unix", "socket", "valkey", "valkeys", "sentinel")
T = TypeVar("T")

# Transport options (kombu's names) a URL may also carry in its query, so a CLI user without an
# app module can say ``sentinel://h:26379;sentinel://h2:26379?master_name=mymaster``.
SENTINEL_OPTIONS = ("master_name", "min_other_sentinels", "sentinel_kwargs")
SSL_KEYS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname", "ssl_ca_path")
CERT_REQS = {
    "required": "required",
    "cert_required": "required",
    "optional": "optional",
    "cert_optional": "optional",
    "none": "none",
    "cert_none": "none",
}
DEFAULT_FAILOVER_TIMEOUT = 30.0
# Connections a client's pool may open before callers wait for one (``redis_max_connections``
# overrides it): above the largest pool (1,024) with room for the worker's own threads. They are
# opened on demand, so a small worker opens few; a busy one waits ``POOL_WAIT`` seconds for a free
# connection, then gets a ``ConnectionError`` its caller retries or reports (never a silent loss).
DEFAULT_MAX_CONNECTIONS = 2048
POOL_WAIT = 20.0
# How much a connection reads at a time. Our replies are mostly a few hundred bytes, a fetch's a
# few KB; a longer one takes a few more reads. (redis-py's 64 KB buffer, zero-filled per
# connection, cost a -c 2 tree 0.15-0.2 MB more than 16 KB.)
READ_SIZE = 16 * 1024


class ConnectionURL(str):
    """A broker or backend URL that also carries the app's connection settings.

    Brokers, fanouts, control clients and event receivers are all built from a URL string; this
    keeps ``broker_transport_options`` and ``broker_use_ssl`` attached to that string, so every
    client the process opens goes through ``client_from_url`` with the same settings, and
    nothing that prints or logs the URL ever sees them (``str(url)`` is the plain URL).
    """

    options: dict[str, Any]

    def __new__(cls, url: str, options: dict[str, Any]) -> ConnectionURL:
        made = super().__new__(cls, url)
        made.options = options
        return made

    def __reduce__(self) -> tuple[Any, ...]:
        return (ConnectionURL, (str(self), self.options))


def with_options(url: str, transport_options: Any = None, use_ssl: Any = None, **extra: Any) -> str:
    """``url`` carrying kombu-style transport options and Celery's ``*_use_ssl`` dict (or True)."""
    options: dict[str, Any] = dict(getattr(url, "options", {}))
    if isinstance(transport_options, dict):
        options.update({k: v for k, v in transport_options.items() if k in SENTINEL_OPTIONS})
    if use_ssl:
        options["ssl"] = ssl_options(use_ssl if isinstance(use_ssl, dict) else {})
    options.update({k: v for k, v in extra.items() if v is not None})
    return ConnectionURL(str(url), options) if options else str(url)


def broker_target(url: str, conf: Any) -> str:
    """The broker URL with the app's settings for every client built from it (``Settings``)."""
    wait = int(conf.get("tqctl_publish_wait_replicas") or 0)
    replicas = (wait, float(conf.get("tqctl_publish_wait_timeout") or 1.0)) if wait > 0 else None
    return with_options(
        url,
        conf.get("broker_transport_options"),
        conf.get("broker_use_ssl"),
        failover_timeout=conf.get("tqctl_failover_timeout"),
        wait_replicas=replicas,
        pool_timeout=conf.get("broker_pool_acquire_timeout"),
        **_amqp_options(url, conf),
        **_sqs_options(url, conf),
    )


def _amqp_options(url: str, conf: Any) -> dict[str, Any]:
    """Celery's queue settings an AMQP broker declares its queues with (RabbitMQ refuses a
    redeclaration that differs, so both sides must agree)."""
    if urlsplit(str(url)).scheme.lower() not in ("amqp", "amqps", "pyamqp"):
        return {}
    return {
        "queue_max_priority": conf.get("task_queue_max_priority"),
        "queue_type": conf.get("task_default_queue_type"),
        "delayed_queue_type": conf.get("broker_native_delayed_delivery_queue_type"),
        "confirm_timeout": (conf.get("broker_transport_options") or {}).get("confirm_timeout"),
    }


def _sqs_options(url: str, conf: Any) -> dict[str, Any]:
    """An SQS broker takes all of ``broker_transport_options`` (kombu's SQS transport reads them)."""
    if urlsplit(str(url)).scheme.lower() != "sqs":
        return {}
    return {"sqs_options": dict(conf.get("broker_transport_options") or {})}


def backend_target(url: str, conf: Any) -> str:
    """The result backend URL with Celery's backend settings (``result_backend_transport_options``,
    ``redis_backend_use_ssl``, ``redis_max_connections``)."""
    return with_options(
        url,
        conf.get("result_backend_transport_options"),
        conf.get("redis_backend_use_ssl"),
        failover_timeout=conf.get("tqctl_failover_timeout"),
        max_connections=conf.get("redis_max_connections"),
    )


def ssl_options(given: dict[str, Any]) -> dict[str, Any]:
    """Celery's ``broker_use_ssl`` keys as redis-py's; ``ssl.CERT_REQUIRED`` or ``"required"`` alike."""
    out: dict[str, Any] = {}
    for key, value in given.items():
        if key == "ssl_cert_reqs":
            value = _cert_reqs(value)
        elif key == "ssl_check_hostname" and isinstance(value, str):
            value = value.lower() not in ("false", "0", "no")
        if key in SSL_KEYS and value is not None:
            out[key] = value
    return out


def _cert_reqs(value: Any) -> str:
    if isinstance(value, int):  # ssl.CERT_NONE (0), CERT_OPTIONAL (1), CERT_REQUIRED (2): an IntEnum
        return {0: "none", 1: "optional"}.get(int(value), "required")
    found = CERT_REQS.get(str(value).strip().lower())
    if found is None:
        raise ImproperlyConfigured(f"ssl_cert_reqs must be required, optional or none, not {value!r}")
    return found


def client_from_url(url: str, **options: Any) -> resp.Client:
    """A client for ``redis://``, ``rediss://`` (TLS), ``redis+socket://`` or ``sentinel://``
    URLs: the one place the engine and the CLI open Redis clients.

    Its pool makes callers wait when full rather than fail: a worker at ``-c 200`` under a burst
    must not lose its claims and result stores to a cap on connections."""
    parts = _split(url)
    scheme = parts.scheme.lower()
    carried: dict[str, Any] = getattr(url, "options", {})
    options.setdefault("socket_connect_timeout", 5.0)
    options.setdefault("health_check_interval", 30)
    options.setdefault("read_size", READ_SIZE)
    size = int(options.pop("max_connections", None) or carried.get("max_connections") or DEFAULT_MAX_CONNECTIONS)
    # Celery's ``broker_pool_acquire_timeout``: how long a caller waits for a free connection of a
    # full pool; unset (Celery: for ever) we wait POOL_WAIT seconds, then report it.
    wait = carried.get("pool_timeout")
    wait = POOL_WAIT if wait is None else float(wait)
    if scheme == "sentinel":
        return _sentinel_client(str(url), carried, options, size, wait)
    if scheme in ("redis+socket", "unix", "socket"):
        query = parse_qs(parts.query)
        db = (query.get("db") or query.get("virtual_host") or ["0"])[0]
        options.update(password=_unquoted(parts.password), username=_unquoted(parts.username))
        rest = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in ("db", "virtual_host")])
        return _pooled(f"unix://{parts.path}?{rest}", size, wait, {**options, "db": db})
    if scheme in ("redis", "rediss", "valkey", "valkeys"):
        fixed = str(url).replace("valkey", "redis", 1) if scheme.startswith("valkey") else str(url)
        tls = carried.get("ssl")
        if tls is not None:
            options.update(tls)
            if scheme in ("redis", "valkey"):  # Celery's broker_use_ssl turns TLS on for redis:// too
                fixed = "rediss" + fixed[len("redis") :]
        fixed, query_tls = _pop_ssl_query(fixed)
        options.update({k: v for k, v in query_tls.items() if k not in options})
        return _pooled(fixed, size, wait, options)
    raise unsupported_url(url)


def _pooled(url: str, size: int, wait: float, options: dict[str, Any]) -> resp.Client:
    try:
        settings, rest = settings_from_url(url, **options)
    except ValueError as exc:
        raise ImproperlyConfigured(f"bad Redis URL {mask_url(url)}: {exc}") from None
    return resp.Client(Pool(settings, max_connections=size, timeout=wait), retry=rest.get("retry"))


def _unquoted(value: str | None) -> str | None:
    return unquote(value) if value else None


def _split(url: str) -> Any:
    try:
        return urlsplit(str(url).split(";", 1)[0])
    except ValueError as exc:
        raise ImproperlyConfigured(f"bad broker URL {mask_url(str(url))}: {exc}") from None


def _pop_ssl_query(url: str) -> tuple[str, dict[str, Any]]:
    """Take the ``ssl_*`` query keys off a URL (Celery's query form) and normalise them."""
    parts = urlsplit(url)
    if "ssl_" not in parts.query:
        return url, {}
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    tls = ssl_options({k: v for k, v in pairs if k in SSL_KEYS})
    rest = urlencode([(k, v) for k, v in pairs if k not in SSL_KEYS])
    return urlunsplit(parts._replace(query=rest)), tls


def sentinel_nodes(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """``sentinel://h1:26379;sentinel://h2:26379/0?master_name=m`` → sentinels and the shared
    settings (db, password for the primary, query options), as kombu reads the same URL."""
    nodes: list[tuple[str, int]] = []
    shared: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in url.split(";"))):
        parts = _split(part)
        if parts.scheme.lower() != "sentinel":
            raise ImproperlyConfigured(f"every address in a sentinel URL must be sentinel://, not {mask_url(part)}")
        try:
            nodes.append((parts.hostname or "localhost", parts.port or 26379))
        except ValueError as exc:
            raise ImproperlyConfigured(f"bad sentinel address {mask_url(part)}: {exc}") from None
        if parts.password and "password" not in shared:
            shared["password"] = unquote(parts.password)
            shared["username"] = unquote(parts.username) if parts.username else None
        db = parts.path.strip("/")
        if db:
            if not db.isdigit():
                raise ImproperlyConfigured(f"bad database number {db!r} in {mask_url(part)}")
            shared.setdefault("db", int(db))
        for key, value in parse_qsl(parts.query):
            shared.setdefault(key, value)
    return nodes, shared


def _sentinel_client(url: str, carried: dict[str, Any], options: dict[str, Any], size: int, wait: float) -> resp.Client:
    """A client on whichever server the sentinels name as primary now. Each new connection asks
    them again, and commands through it retry for ``failover_timeout`` seconds, so a failover
    looks like a pause to callers (delay(), workers, the console), not an error."""
    nodes, shared = sentinel_nodes(url)
    settings = {**shared, **carried}
    master = settings.get("master_name")
    if not master:
        raise ImproperlyConfigured(
            "a sentinel:// broker needs a master name: broker_transport_options={'master_name': ...} "
            "(result_backend_transport_options for the backend), or ?master_name=NAME in the URL"
        )
    sentinel_kwargs = dict(settings.get("sentinel_kwargs") or {})
    sentinel_kwargs.setdefault("socket_connect_timeout", options["socket_connect_timeout"])
    sentinel_kwargs.setdefault("socket_timeout", options["socket_connect_timeout"])
    window = float(settings.get("failover_timeout") or DEFAULT_FAILOVER_TIMEOUT)
    retry = options.pop("retry", None) or failover_retry(window)
    for key in ("password", "username", "db"):
        if settings.get(key) is not None:
            options.setdefault(key, settings[key])
    tls = settings.get("ssl")
    if tls is not None:
        options.update(tls)
    primary, rest = settings_from(dict(options))
    asked, _ = settings_from(sentinel_kwargs)
    locate = PrimaryLocator(nodes, str(master), asked, int(settings.get("min_other_sentinels") or 0))
    pool = Pool(primary, locate, max_connections=size, timeout=wait, connection_class=FollowingConnection)
    return resp.Client(pool, retry=retry)


def failover_retry(window: float) -> resp.Retry:
    """Retries that span about ``window`` seconds: backoff 50 ms doubling to 0.5 s."""
    retries, spent, step = 0, 0.0, 0.05
    while spent < window:
        spent += step
        step = min(step * 2, 0.5)
        retries += 1
    return resp.Retry(retries, base=0.025, cap=0.5, jitter=False)


REDIS_USE = "redis://, rediss://, redis+socket:// or sentinel://"


def unsupported_url(url: str, use: str = REDIS_USE) -> ImproperlyConfigured:
    """The one-line error for a URL whose scheme nothing here takes, naming the schemes to ``use``
    (a Redis client's by default; AMQP named, as users try it first there)."""
    scheme = urlsplit(url.split(";", 1)[0]).scheme.lower()
    if scheme in ("amqp", "amqps", "pyamqp"):
        return ImproperlyConfigured(
            f"AMQP brokers are not supported here yet ({mask_url(url)}): workers and clients run on "
            "RabbitMQ (README 'RabbitMQ (preview)'), this needs a Redis URL"
        )
    return ImproperlyConfigured(f"unsupported broker URL scheme {scheme!r} in {mask_url(url)} (use {use})")


def is_redis_error(exc: BaseException) -> bool:
    """Whether our Redis client raised ``exc``: lets a caller tell a Redis server's failure from
    another transport's without knowing the client (the broker boundary)."""
    return isinstance(exc, resp.RedisError)


def describe_error(url: str, exc: BaseException) -> str:
    """One line naming the host and the cause, password masked."""
    text = one_line(exc)
    for part in str(url).split(";"):
        password = _split(part).password if "://" in part else None
        if password:
            text = text.replace(password, "****")
    return unreachable_line(url, text)


def guarded(url: str, call: Callable[[], T]) -> T:
    """Run a Redis call, turning connection and auth failures into ``BrokerUnavailable``."""
    try:
        return call()
    except (resp.ConnectionError, resp.TimeoutError) as exc:
        raise BrokerUnavailable(describe_error(url, exc)) from None
    except resp.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc) or "invalid password" in str(exc):
            raise BrokerUnavailable(describe_error(url, exc)) from None
        raise


def as_text(value: object) -> str:
    """A reply item as str: replies come as bytes, a caller's own client may decode them."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a bulk string reply, got {type(value).__name__}")


def as_bytes(value: bytes | str) -> bytes:
    """A reply item as bytes (see ``as_text``)."""
    return value if isinstance(value, bytes) else value.encode()


class ThreadConnections:
    """One connection per thread (and per process after a fork), for hot paths that skip the
    pool's checkout and the retry wrapper; ``close`` disconnects every one handed out.

    They are made outside the client's pool, so they never use up its connections (a thread pool of
    200 would take a capped pool's every one, and its claims would then fail). When a thread ends (or a greenlet,
    under gevent) its thread-local holder is collected and the connection goes back to a free list
    for the next new thread: a pool that shrinks and grows opens no more of them, with no scan."""

    def __init__(self, client: resp.Client) -> None:
        self.client = client
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pid = forks.pid
        self._handed: list[resp.Connection] = []  # every one made
        self._free: list[resp.Connection] = []  # their threads have ended

    def get(self) -> resp.Connection:
        """This thread's connection; in a forked child, a new one (never the parent's socket).
        The process id is ``forks.pid``, kept current at each fork, not ``os.getpid()``: a
        system call on every publish."""
        holder = getattr(self._local, "holder", None)
        if holder is None or holder.pid != forks.pid:
            holder = self._local.holder = _Holder(self._take(), forks.pid)
            weakref.finalize(holder, self._free.append, holder.conn)  # list.append: no lock in a GC callback
        return holder.conn

    def _take(self) -> resp.Connection:
        with self._lock:
            if forks.pid != self._pid:  # a forked child inherits none of them
                self._pid, self._handed, self._free = forks.pid, [], []
            if self._free:
                return self._free.pop()
            return self._new()

    def make(self) -> resp.Connection:
        """A connection of one's own (not a thread's), also disconnected on ``close``."""
        with self._lock:
            return self._new()

    def _new(self) -> resp.Connection:
        conn = self.client.connection_pool.make()
        self._handed.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            conns, self._handed, self._free, self._local = self._handed, [], [], threading.local()
        for conn in conns:
            conn.disconnect()


class _Holder:
    """A thread's connection, held in its thread-local storage (collected when the thread ends)."""

    __slots__ = ("conn", "pid", "__weakref__")

    def __init__(self, conn: resp.Connection, pid: int) -> None:
        self.conn = conn
        self.pid = pid
