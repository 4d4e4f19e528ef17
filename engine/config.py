"""Settings under Celery's lowercase names, and URL masking.

Settings live on one ``Settings`` object per ``App`` (no module globals), so two apps in
one process never see each other's configuration.
"""

from __future__ import annotations

import copy
import datetime as dt
import importlib
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from engine.celery_defaults import CELERY_DEFAULTS
from engine.celery_settings import CELERY_SETTINGS, OLD_TO_NEW, mixed_names_error
from engine.exceptions import ImproperlyConfigured

DEFAULTS: dict[str, Any] = {
    "broker_url": None,
    "result_backend": None,
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "timezone": "UTC",
    "enable_utc": True,
    "task_default_queue": "celery",
    "task_routes": None,
    "task_default_rate_limit": None,
    "task_acks_late": False,
    "task_time_limit": None,
    "task_soft_time_limit": None,
    "task_always_eager": False,
    "task_eager_propagates": False,
    "task_ignore_result": False,
    "task_track_started": False,
    "task_default_priority": None,
    "worker_prefetch_multiplier": 4,
    "worker_concurrency": None,
    "worker_send_task_events": True,
    "task_send_sent_event": True,  # Celery's default is False; ours is cheap (batched), so on
    "worker_control_allow": None,
    "result_expires": dt.timedelta(days=1),  # Celery's type: code calls .total_seconds() on it
    "result_extended": False,
    "beat_schedule": {},
    "imports": (),
    "include": (),
    "task_store_eager_result": False,
    "task_store_errors_even_if_ignored": False,
    "task_acks_on_failure_or_timeout": True,
    "task_reject_on_worker_lost": None,
    "worker_hijack_root_logger": True,
    "worker_log_format": "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s",
    "worker_task_log_format": "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s",
    # Our own additions (Celery ignores unknown names, and so do we in config modules).
    "tqctl_state_dir": ".tqctl",
    "tqctl_server_path": None,
    "tqctl_owner_timeout": 5.0,
    "tqctl_heartbeat_interval": 1.0,
    "tqctl_max_message_bytes": 16 * 1024 * 1024,
    "tqctl_delivery_limit": 5,
    "tqctl_shutdown_timeout": 30.0,
    "tqctl_children_fetch": True,  # prefork on Redis: children fetch and share batches (README "Workers")
    "tqctl_result_retry_timeout": 30.0,
    "tqctl_history_size": 10_000,
    "tqctl_beat_lease": 10.0,
    "tqctl_beat_tick": 1.0,
    # Connections (Celery's names): sentinel master_name/sentinel_kwargs, and TLS.
    "broker_transport_options": {},
    "result_backend_transport_options": {},
    "broker_use_ssl": None,
    "broker_pool_acquire_timeout": None,  # Celery's default: None (we then wait redisconn.POOL_WAIT)
    "redis_backend_use_ssl": None,
    "tqctl_failover_timeout": 30.0,  # sentinel: how long commands retry while a new primary is chosen
    "tqctl_publish_wait_replicas": 0,  # >0: delay() returns only once that many replicas have the message
    "tqctl_publish_wait_timeout": 1.0,
    # Message signing: {key_id: secret}; signing is on when tqctl_signing_key_id names one of them.
    "tqctl_signing_keys": {},
    "tqctl_signing_key_id": None,
}

_UNSET = object()
SECRET_WORDS = re.compile(r"(password|secret|token|key|auth|credential)", re.IGNORECASE)
URL_SETTINGS = frozenset({"broker_url", "result_backend"})


class Settings:
    """Celery-style ``app.conf``: attribute and item access, defaults filled in.

    A Celery 3 name (``CELERY_TASK_SERIALIZER``, ``CELERYD_MAX_TASKS_PER_CHILD``) is written under
    today's name and reads today's value, so both names always agree and the engine, which reads
    today's names only, sees it; the last write wins, under either name.

    ``_version`` counts the changes made through this object, so what is worked out from the
    settings (a send plan, engine.sending) is kept until it changes instead of being read
    again on every call. A value changed in place (``conf.task_routes["x"] = ...``) is not
    counted: readers of such a value read it each time."""

    _version: int

    def __init__(self, **overrides: Any) -> None:
        object.__setattr__(self, "_values", dict(DEFAULTS))
        object.__setattr__(self, "_explicit", set())  # names the user set: what the start-up check reads
        object.__setattr__(self, "_version", 0)
        self.update(overrides)

    def _changed(self) -> None:
        object.__setattr__(self, "_version", self._version + 1)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"'Settings' object has no attribute {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        name = OLD_TO_NEW.get(name, name)
        self._values[name] = value
        self._explicit.add(name)
        self._changed()

    def __getitem__(self, name: str) -> Any:
        """A name set or ours, else a Celery setting at Celery's default. That default is kept on
        first read, so a value changed in place (``conf.task_publish_retry_policy["max_retries"]``)
        stays changed, as in Celery. ``get`` (what the engine reads) of a name neither set nor read
        gives its own default, so the engine still tells "unset" from a value."""
        try:
            return self._values[name]
        except KeyError:
            if name not in CELERY_SETTINGS:
                if name in OLD_TO_NEW:  # only here, off the hot path of a set or defaulted name
                    return self[OLD_TO_NEW[name]]
                raise
        return self._values.setdefault(name, copy.deepcopy(CELERY_DEFAULTS.get(name)))

    def __setitem__(self, name: str, value: Any) -> None:
        name = OLD_TO_NEW.get(name, name)
        self._values[name] = value
        self._explicit.add(name)
        self._changed()

    def __contains__(self, name: object) -> bool:
        return name in self._values or name in CELERY_SETTINGS or name in OLD_TO_NEW

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def get(self, name: str, default: Any = None) -> Any:
        values = self._values
        if name in values:  # the engine's reads: one test more than a plain dict.get
            return values[name]
        return values.get(OLD_TO_NEW[name], default) if name in OLD_TO_NEW else default

    def update(self, values: Mapping[str, Any] | None = None, **kw: Any) -> None:
        """Old names are taken one by one, as Celery takes them once its configuration is read:
        a mix of old and new names in one call is no error here (``config_from_object`` refuses one)."""
        for source in (values or {}, kw):
            for key, value in source.items():
                name = OLD_TO_NEW.get(key) or key.lower()
                self._values[name] = value
                self._explicit.add(name)
        self._changed()

    def from_object(self, obj: Any, namespace: str | None = None) -> None:
        """Copy settings from a module, a ``"module"``/``"module:attr"`` path or any object, as Celery's
        ``config_from_object``: lowercase names; Celery 3's uppercase names (``CELERY_ACKS_LATE``,
        ``BROKER_URL``) under today's names; with ``namespace="CELERY"`` only ``CELERY_*`` names,
        prefix dropped (Django's ``CELERY_BROKER_URL`` → ``broker_url``). Old and new names mixed
        (no namespace) raise ImproperlyConfigured naming the ones to rename, as Celery does."""
        if isinstance(obj, str):
            module, _, attr = obj.partition(":")
            obj = importlib.import_module(module)
            for part in filter(None, attr.split(".")):
                obj = getattr(obj, part)
        prefix = f"{namespace}_" if namespace else None
        names = dir(obj)
        mix = None if prefix else mixed_names_error(names)
        if mix:
            raise ImproperlyConfigured(mix)
        # A setting given under both names takes its new name's value, as in Celery: old names first.
        for name in sorted(names, key=str.islower):
            key = _setting_name(name, prefix)
            if key is not None:
                self._values[key] = getattr(obj, name)
                self._explicit.add(key)
        self._changed()

    def setdefault(self, name: str, value: Any) -> Any:
        self._changed()
        return self._values.setdefault(OLD_TO_NEW.get(name, name), value)

    def startup_warnings(self) -> list[str]:
        """What a starting worker warns about: set Celery settings it ignores, and unknown names."""
        from engine.celery_settings import startup_warnings

        return startup_warnings({name: self._values.get(name) for name in self._explicit}, own=DEFAULTS)

    def changes(self) -> dict[str, Any]:
        """Settings that differ from the defaults, secrets masked: what ``inspect conf`` shows."""
        return {
            key: masked_setting(key, value)
            for key, value in self._values.items()
            if DEFAULTS.get(key, CELERY_DEFAULTS.get(key, _UNSET if key not in CELERY_SETTINGS else None)) != value
            and not callable(value)
        }

    def table(self, with_defaults: bool = False, censored: bool = True) -> dict[str, Any]:
        """Celery's: the settings changed from the defaults (all of them ``with_defaults``), secrets
        masked unless ``censored=False``; what to log or show without leaking a password."""
        if with_defaults:
            shown = {**{name: self[name] for name in sorted(CELERY_SETTINGS)}, **self._values}
        else:
            shown = {key: self._values[key] for key in self.changes()}
        return {key: masked_setting(key, value) if censored else value for key, value in shown.items()}

    def find_option(self, name: str, namespace: str = "") -> Any:
        """Celery's ``find_option``: ``(namespace, key, option)`` for a short or full setting name
        (``"expires"`` is ``("result", "expires", ...)``); KeyError for no setting."""
        from engine.conf_search import find

        return find(DEFAULTS, name, namespace)

    def find_value_for_key(self, name: str, namespace: str = "celery") -> Any:
        """The value of the setting ``find_option`` names (``find_value_for_key("expires")``)."""
        found_namespace, key, _ = self.find_option(name, namespace)
        return self[f"{found_namespace}_{key}" if found_namespace else key]

    def humanize(self, with_defaults: bool = False, censored: bool = True) -> str:
        """``table`` as ``key: value`` lines, sorted (Celery's ``app.conf.humanize()``)."""
        import pprint  # only here: a worker never formats its settings, so it need not hold it

        return "\n".join(
            f"{key}: {pprint.pformat(value, width=50)}"
            for key, value in sorted(self.table(with_defaults, censored).items())
        )


def seconds_setting(value: Any) -> float | None:
    """A duration setting as Celery takes it (seconds, or a ``timedelta``, as the Configuration
    guide writes ``result_expires = timedelta(hours=1)``) in seconds; None and 0 stay as given."""
    if value is None:
        return None
    return float(value.total_seconds()) if hasattr(value, "total_seconds") else float(value)


def _setting_name(name: str, prefix: str | None) -> str | None:
    """The setting an attribute of a config object names, or None when it names none."""
    from engine.celery_settings import CELERY_SETTINGS, OLD_NAMES

    if name.startswith("_"):
        return None
    if prefix is not None:
        return name[len(prefix) :].lower() if name.startswith(prefix) and len(name) > len(prefix) else None
    if name.islower():
        return name
    if name.isupper():
        lowered = name.lower()
        if lowered in OLD_NAMES:
            return OLD_NAMES[lowered]
        if lowered in CELERY_SETTINGS or lowered.startswith("tqctl_"):
            return lowered
    return None


def masked_setting(key: str, value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)) and SECRET_WORDS.search(key):
        # A setting whose own name says secret holds secrets under names that do not (the key
        # ids of ``tqctl_signing_keys={"k1": "..."}``): every value in it is masked, ids kept.
        return _masked_values(value)
    if isinstance(value, dict):  # e.g. broker_transport_options={"sentinel_kwargs": {"password": ...}}
        return {k: masked_setting(str(k), v) for k, v in value.items()}
    if key in URL_SETTINGS and isinstance(value, str):
        return mask_url(value)
    if SECRET_WORDS.search(key) and value:
        return "********"
    return value


def _masked_values(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _masked_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked_values(v) for v in value]
    return "********" if value else value


def env_broker_url() -> str | None:
    return os.environ.get("TQCTL_BROKER") or None


def env_backend_url() -> str | None:
    return os.environ.get("TQCTL_BACKEND") or None


def env_broker_api() -> str | None:
    """RabbitMQ's management API (``engine.broker.amqp_api``), for listing queues on AMQP."""
    return os.environ.get("TQCTL_BROKER_API") or None


def state_dir(conf: Settings) -> str:
    """The bundled broker's folder: a setting other than the default wins, then ``TQCTL_STATE_DIR``
    (the variable the CLI reads too), then ``./.tqctl``."""
    configured = conf.tqctl_state_dir
    if configured != DEFAULTS["tqctl_state_dir"]:
        return configured
    return os.environ.get("TQCTL_STATE_DIR") or configured


def mask_url(url: str | None, mask: str = "****") -> str:
    """Replace the password in a URL with ``****`` (the user name stays, it helps debugging)."""
    if not url:
        return ""
    if ";" in url:  # kombu's failover list (sentinel://a;sentinel://b): mask every address
        return ";".join(mask_url(part, mask) for part in url.split(";"))
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//([^:/@]*):[^@/]*@", rf"//\1:{mask}@", url)
    if "@" not in parts.netloc:
        # No user info as urlsplit reads it; but a password holding an unquoted '/', '?' or '#'
        # ends the netloc early (``redis://u:ab/cd@host``) and would show its tail: then
        # everything before the last '@' is taken as user info (masking too much, never too little).
        scheme, sep, rest = url.partition("://")
        user, colon, _ = rest.rpartition("@")[0].partition(":")
        if sep and "@" in rest and colon:
            return _mask_query(f"{scheme}://{user}:{mask}@{rest.rpartition('@')[2]}")
        return _mask_query(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    masked = f"{user}:{mask}@{hostport}" if ":" in userinfo or parts.password else f"{userinfo}@{hostport}"
    return _mask_query(urlunsplit(parts._replace(netloc=masked)))


def _mask_query(url: str) -> str:
    return re.sub(r"((?:password|passwd)=)[^&]*", r"\1****", url, flags=re.IGNORECASE)


def unreachable_line(url: str, cause: str) -> str:
    """The one line a broker that cannot be reached gives, whatever its transport: the host first
    (what to check), then the URL with its password masked, then the cause."""
    return f"cannot reach broker at {url_host(url)} ({mask_url(url)}): {cause}"


def url_host(url: str) -> str:
    """``host:port`` (or the socket path) of a URL, for error messages that must name the target."""
    parts = urlsplit(url.split(";", 1)[0])
    if parts.scheme.endswith("socket") or parts.scheme == "unix":
        return parts.path
    host = parts.hostname or "localhost"
    default_port = 5672 if parts.scheme.startswith("amqp") else 26379 if parts.scheme == "sentinel" else 6379
    try:
        port = parts.port or default_port
    except ValueError:
        port = default_port
    return f"{host}:{port}"
