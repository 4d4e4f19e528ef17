"""RabbitMQ's management API, for the one thing AMQP itself cannot do: name a vhost's queues.

A passive declare gives a queue's depth and consumers, but only for a name already known, so a
queue nobody consumes (a client routes tasks to it; no worker was started for it yet) would stay
out of sight. When the management plugin is on, ``TQCTL_BROKER_API`` (Flower's ``--broker-api``
form: ``http://user:pass@host:15672/api/``) lets the console and ``tqctl queues`` list them all.
Without credentials in that URL, the broker URL's are used. The password is never shown.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from engine.config import mask_url
from engine.exceptions import BrokerUnavailable, ImproperlyConfigured

TIMEOUT = 5.0  # seconds for one API call (the console asks from a worker thread, never the screen's)
# Queues that are plumbing, not task queues: event and remote-control queues (ours and Celery's,
# kombu's reply queues), the delayed-delivery levels, server-named ones, and the dead letters
# (shown in their own place).
PLUMBING_PREFIXES = ("celeryev.", "celery_delayed_", "amq.", "reply.celery.pidbox", "tqctl.dead")
PLUMBING_SUFFIXES = (".pidbox", ".reply.celery.pidbox")


def is_plumbing(name: str) -> bool:
    return name.startswith(PLUMBING_PREFIXES) or name.endswith(PLUMBING_SUFFIXES)


class ManagementApi:
    def __init__(self, api_url: str, amqp_url: str, timeout: float = TIMEOUT) -> None:
        parts = urlsplit(api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ImproperlyConfigured(
                f"TQCTL_BROKER_API must be the management API's http(s) URL, e.g. "
                f"http://guest:guest@localhost:15672/api/, not {mask_url(api_url)!r}"
            )
        broker = urlsplit(str(amqp_url).split(";", 1)[0])
        user = unquote(parts.username or broker.username or "guest")
        password = unquote(parts.password or broker.password or "guest")
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") or "/api", "", ""))
        path = broker.path[1:] if broker.path.startswith("/") else broker.path
        self.vhost = unquote(path) or "/"
        self.timeout = timeout
        self.shown = mask_url(api_url)

    def queue_names(self) -> list[str]:
        """Every task queue of the broker URL's vhost, by name (plumbing left out)."""
        listed = self._get(f"/queues/{quote(self.vhost, safe='')}?columns=name")
        if not isinstance(listed, list):
            raise BrokerUnavailable(f"RabbitMQ management API at {self.shown} answered something other than a list")
        names = (str(q.get("name", "")) for q in listed if isinstance(q, dict))
        return sorted(n for n in names if n and not is_plumbing(n))

    def _get(self, path: str) -> object:
        request = urllib.request.Request(self.base + path, headers={"Authorization": self._auth})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310 - http(s) only
                return json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            why = "refused the login (user or password)" if exc.code == 401 else f"answered HTTP {exc.code}"
            raise BrokerUnavailable(f"RabbitMQ management API at {self.shown} {why}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BrokerUnavailable(f"RabbitMQ management API at {self.shown} unreachable: {reason}") from None
