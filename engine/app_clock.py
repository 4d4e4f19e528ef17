"""``app.timezone`` and ``app.now()``: the app's clock, in the zone its ``timezone`` setting names.

Celery's beat asks ``app.now()`` for the time, so a schedule (and a test) can move that one clock
without touching the broker's or the worker's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from engine.exceptions import ImproperlyConfigured


def app_timezone(conf: Any) -> dt.tzinfo:
    """``timezone`` as a ``tzinfo`` (a name or a tzinfo object); unset means UTC, or the machine's
    local zone when ``enable_utc`` is off, as in Celery."""
    zone = conf.get("timezone")
    if zone is None or zone == "":
        if conf.get("enable_utc", True):
            return dt.timezone.utc
        local = dt.datetime.now().astimezone().tzinfo
        return local or dt.timezone.utc
    if isinstance(zone, dt.tzinfo):
        return zone
    if str(zone).upper() == "UTC":
        return dt.timezone.utc
    # Imported here: most apps name no zone, and every worker process would hold the module.
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ImproperlyConfigured(f"timezone={zone!r} is not a known IANA time zone") from exc


def app_now(conf: Any) -> dt.datetime:
    """The current time, aware, in the app's zone."""
    return dt.datetime.now(dt.timezone.utc).astimezone(app_timezone(conf))
