"""``app.bugreport()``: what to paste into a bug report, in Celery's layout, with every password
in the broker and backend URLs masked (a report is shared; a secret in it would leak)."""

from __future__ import annotations

import platform
from typing import Any

from engine.config import mask_url

# The Celery release whose wire protocol, task API and remote-control replies we follow.
CELERY_COMPAT = "5.7.0"
MASK = "********"  # what Celery's bugreport puts in place of a password


def _transport(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else (url or "disabled")


def bugreport(app: Any) -> str:
    """Software, platform, loader and settings lines as Celery's ``bugreport`` has them; the
    ``software`` line names the Celery release we follow and, beside it, the engine that runs."""
    from importlib import metadata  # with email and zipfile: megabytes no worker needs until asked

    try:
        ours = metadata.version("tqctl")
    except metadata.PackageNotFoundError:
        ours = "unknown"
    conf = app.conf
    try:
        broker = str(app.broker_url())
    except Exception:  # noqa: BLE001 - a report must come out even when the settings are broken
        broker = str(conf.get("broker_url") or "")
    results = str(conf.get("result_backend") or "")
    lines = [
        f"software -> celery:{CELERY_COMPAT} (tqctl {ours}, Celery-compatible) py:{platform.python_version()}",
        f"            hiredis:{metadata.version('hiredis')}",
        f"platform -> system:{platform.system()} arch:{', '.join(x for x in platform.architecture() if x)}",
        f"            kernel version:{platform.release()} imp:{platform.python_implementation()}",
        f"loader   -> {type(app).__module__}.{type(app).__qualname__}",
        f"settings -> transport:{_transport(broker)} results:{mask_url(results, MASK) or 'disabled'}",
        "",
        f"broker_url: {mask_url(broker, MASK)!r}",
        f"result_backend: {mask_url(results, MASK)!r}",
    ]
    return "\n".join(lines) + "\n"
