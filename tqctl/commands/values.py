"""Checks for the values commands take (URLs, task ids, queue names), run as Typer callbacks, so a
bad value is a usage error (one line, exit 2) before anything is connected or started.

Why here and not where the value is used: there a bad port is a raw ``ValueError``, a bad database
number is silently 0, and an empty ``--broker`` quietly starts a bundled broker in the current folder.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import typer
from typer._click.exceptions import MissingParameter

from engine import states
from engine.redisconn import REDIS_SCHEMES

MAX_ID = 255
MAX_NAME = 255
# Celery makes UUIDs; custom ids are fine too, as long as they are one word of these characters.
TASK_ID = re.compile(r"[\w.:@+=/#-]+")
SOCKET_SCHEMES = ("redis+socket", "unix", "socket")


def _short(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def url_problem(url: str) -> str | None:
    """What is wrong with a Redis URL's form, or None. Never quotes the URL: it may hold a password.
    Celery's Sentinel form lists several (``sentinel://h1:26379;sentinel://h2:26379``): each is checked."""
    if ";" in url and url.lower().startswith("sentinel://"):
        return next(filter(None, (url_problem(part.strip()) for part in url.split(";") if part.strip())), None)
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if not scheme or "://" not in url:
            return "is not a URL (e.g. redis://host:6379/0)"
        if scheme not in REDIS_SCHEMES:
            return None  # refused later with its own message (AMQP named), or another helper's scheme
        query = parse_qs(parts.query)
        if scheme in SOCKET_SCHEMES:
            if not parts.path:
                return "names no socket path"
            db = (query.get("db") or query.get("virtual_host") or ["0"])[0]
        else:
            parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
            db = parts.path.strip("/") or (query.get("db") or ["0"])[0]
    except ValueError as exc:
        return f"has a bad port ({exc})" if "port" in str(exc).lower() else f"is not a valid URL ({exc})"
    if not db.isdigit():
        return f"has a database number that is not a number: {_short(db)}"
    return None


def given_on_command_line(ctx: Any, name: str) -> bool:
    return getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"


def inherited(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    """The value of an option placed before the subcommand (``tqctl --broker URL queues``) when the
    subcommand's own copy was not given on the command line: the global flag then beats the
    environment and the default, as if written after the subcommand. (Typer gives every level its
    own options, so without this the root's ``--broker`` was parsed and dropped.)"""
    name = param.name or ""
    if ctx.parent is None or given_on_command_line(ctx, name):
        return value
    root = ctx.find_root()
    return root.params.get(name, value) if given_on_command_line(root, name) else value


def app_option(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    """Callback for ``-A/--app``: a global ``tqctl -A mod …`` reaches the subcommand."""
    return inherited(ctx, param, value)


def required_app_option(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str:
    """``-A`` for commands that cannot run without an app, given before or after the subcommand."""
    value = inherited(ctx, param, value)
    if not value:
        raise MissingParameter(ctx=ctx, param=param)  # type: ignore[arg-type] # (a typer param is one)
    return str(value)


def url_option(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    """Callback for ``--broker``/``--backend``: empty only when not given; a given URL must parse."""
    value = inherited(ctx, param, value)
    if value is None:
        return value
    if not value.strip():
        if given(ctx, param.name or ""):
            raise typer.BadParameter("is empty: give a URL, or leave the option out")
        return value
    if problem := url_problem(value.strip()):
        raise typer.BadParameter(f"the URL {problem}")
    if param.name == "broker" and (problem := broker_scheme_problem(value.strip())):
        raise typer.BadParameter(problem)
    return value.strip()


def broker_scheme_problem(url: str) -> str | None:
    """A broker URL whose scheme no transport takes, named with every scheme that works: a usage
    error (exit 2) found before connecting. Never quotes the URL."""
    from engine.broker.connect import BROKER_SCHEMES, BROKER_USE

    scheme = url.split(";", 1)[0].partition("://")[0].lower()
    if scheme in BROKER_SCHEMES:
        return None
    return f"unsupported broker URL scheme {_short(scheme)}: use {BROKER_USE}"


def not_empty(what: str) -> Any:
    """A callback refusing an empty or blank argument (a dead letter's id), whatever its form."""

    def check(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        for item in value if isinstance(value, (list, tuple)) else [value] if value is not None else []:
            if not str(item).strip():
                raise typer.BadParameter(f"{what} is empty")
        return value

    return check


def id_problem(value: str, what: str = "task id") -> str | None:
    if not value.strip():
        return f"{what} is empty"
    if len(value) > MAX_ID:
        return f"{what} is {len(value)} characters long (at most {MAX_ID})"
    if not TASK_ID.fullmatch(value):
        return f"{what} {_short(value)} is not an id (letters, digits and . : @ + = / # - _)"
    return None


def task_id_argument(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    """Callback for task-id arguments (one, or a list)."""
    for item in value if isinstance(value, (list, tuple)) else [value] if value is not None else []:
        if problem := id_problem(item):
            raise typer.BadParameter(problem)
    return value


def task_state_option(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    """``--state`` in any case (``failure`` is FAILURE). A word that is no state is a usage error:
    filtering on it would print an empty list, as if no task had failed."""
    if not value:
        return value
    if value.upper() not in states.TASK_STATES:
        raise typer.BadParameter(f"{_short(value)} is not a task state: use {', '.join(states.TASK_STATES)}")
    return value.upper()


def name_problem(value: str, what: str) -> str | None:
    if not value.strip():
        return f"{what} is empty"
    if len(value) > MAX_NAME:
        return f"{what} is {len(value)} characters long (at most {MAX_NAME})"
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return f"{what} {_short(value)} has spaces or control characters"
    return None


def given(ctx: Any, name: str) -> bool:
    """Given on the command line or in the environment: an empty value there is a mistake, where an
    empty default only means "not given". (Typer's own click: the source compared by name.)"""
    return getattr(ctx.get_parameter_source(name), "name", "") in ("COMMANDLINE", "ENVIRONMENT")


def name_argument(what: str) -> Any:
    """A callback refusing an empty, over-long or blank-holding name (a task or queue name); an
    option left out (its default, "") passes, ``--queue ''`` does not."""

    def check(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
        if value is not None and (value != "" or param.param_type_name == "argument" or given(ctx, param.name or "")):
            if problem := name_problem(value, what):
                raise typer.BadParameter(problem)
        return value

    return check


def names_option(what: str) -> Any:
    """A callback for comma-separated names (``-Q a,b``, ``-d w1@h,w2@h``): when given, each must
    be a name; an empty one would otherwise mean "the default" (every queue, every worker)."""

    def check(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
        if value is None or not given(ctx, param.name or ""):
            return value
        for part in value.split(",") if value.strip() else [value]:
            if problem := name_problem(part.strip(), what):
                raise typer.BadParameter(problem)
        return value

    return check


def finite_option(ctx: typer.Context, param: typer.CallbackParam, value: float | None) -> float | None:
    """Seconds must be a finite number: ``nan`` slips past range checks, ``inf`` overflows the
    socket timeout or the date it is added to."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a number of seconds")
    return value


def future_seconds(ctx: typer.Context, param: typer.CallbackParam, value: float | None) -> float | None:
    """``--countdown``/``--expires``: finite, and a date the message can carry (not 1e20 s away)."""
    value = finite_option(ctx, param, value)
    if value is not None:
        try:
            dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=value)
        except OverflowError:
            raise typer.BadParameter(f"{value:g} seconds is past any date (year 9999)") from None
    return value


def folder_option(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    """``--state-dir ''`` meant no folder, not the current one: refused rather than filled."""
    if value is not None and not value.strip() and given(ctx, param.name or ""):
        raise typer.BadParameter("is empty: give a folder, or leave the option out")
    return value
