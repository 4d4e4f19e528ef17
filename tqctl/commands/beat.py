"""``tqctl beat``: run the periodic-task scheduler, or list and steer its entries while it runs.

``tqctl beat -A shop`` runs beat (any number may run: one leads, the others stand by);
``tqctl beat ls|run|enable|disable -A shop`` read and change the state beat keeps in the broker.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from engine.beat import Beat, BeatControl, UnknownEntry
from engine.broker.inspect import NETWORK_ERRORS, UNREACHABLE
from engine.exceptions import BrokerUnavailable, ImproperlyConfigured
from engine.redisconn import describe_error
from tqctl.commands.values import app_option, url_option
from tqctl.loader import AppNotFound, load_app
from tqctl.output import EXIT_USAGE, emit, fail, note

T = TypeVar("T")
LEVELS = {"debug", "info", "warning", "error", "critical"}
COLUMNS = ["name", "task", "schedule", "enabled", "last_run", "next_run", "total_run_count"]

app = typer.Typer(
    help="Run the periodic-task scheduler (beat), or list, run, enable and disable its entries.", add_completion=False
)

AppOpt = typer.Option("", "-A", "--app", callback=app_option, help="module or module:attr holding the App")
BrokerOpt = typer.Option("", "--broker", envvar="TQCTL_BROKER", callback=url_option, help="broker URL")
JsonOpt = typer.Option(False, "--json", help="machine-readable output")


def _app(ctx: typer.Context, spec: str, broker: str) -> Any:
    group = ctx.obj or {}  # what the group callback got: ``tqctl beat -A shop ls`` works too
    spec = spec or group.get("app", "")
    broker = broker or group.get("broker", "")
    if not spec:
        fail("missing -A/--app: name the module holding the App, e.g. tqctl beat -A shop", EXIT_USAGE)
    try:
        found = load_app(spec)
    except AppNotFound as exc:
        fail(str(exc), EXIT_USAGE)
    if broker:
        found.conf.broker_url = broker
    return found


def _call(found: Any, action: Callable[[], T]) -> T:
    """Run an engine call; expected failures become one line via ``fail``."""
    try:
        return action()
    except (UnknownEntry, ImproperlyConfigured, BrokerUnavailable) as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))
    except UNREACHABLE as exc:
        fail(describe_error(found.broker_url(), exc))
    except NETWORK_ERRORS as exc:
        fail(f"broker error: {exc}")


@app.callback(invoke_without_command=True)
def beat(
    ctx: typer.Context,
    app_spec: str = AppOpt,
    broker: str = BrokerOpt,
    loglevel: str = typer.Option("info", "-l", "--loglevel"),
    lease: float = typer.Option(
        0.0, "--lease", min=0, help="leader lease in seconds (default: tqctl_beat_lease or 10)"
    ),
) -> None:
    """Run beat when no subcommand is given; ``ls``, ``run``, ``enable``, ``disable`` manage entries."""
    ctx.obj = {"app": app_spec, "broker": broker}
    if ctx.invoked_subcommand is not None:
        return
    if loglevel.lower() not in LEVELS:
        fail(f"unknown log level {loglevel!r}: use {', '.join(sorted(LEVELS))}", EXIT_USAGE)
    if lease < 0:
        fail("--lease must be positive", EXIT_USAGE)
    logging.basicConfig(
        level=loglevel.upper(), stream=sys.stderr, format="[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
    )
    found = _app(ctx, app_spec, broker)
    scheduler = _call(found, lambda: Beat(found, lease_seconds=lease or None))
    _call(found, lambda: scheduler.store.client.ping())
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    _call(found, lambda: scheduler.run(stop))


@app.command("ls")
def ls(ctx: typer.Context, app_spec: str = AppOpt, broker: str = BrokerOpt, as_json: bool = JsonOpt) -> None:
    """List entries: schedule, enabled, last and next run, run count."""
    found = _app(ctx, app_spec, broker)
    control = _call(found, lambda: BeatControl(found))
    rows = _call(found, control.entries)
    if not as_json:
        holder = _call(found, control.leader)
        note(f"leader: {holder['token']}" if holder else "leader: none (no beat is running)")
    emit(rows, as_json, columns=COLUMNS)


@app.command("run")
def run(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="entry name"),
    app_spec: str = AppOpt,
    broker: str = BrokerOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Send one run of an entry now (its schedule and counters are left alone)."""
    found = _app(ctx, app_spec, broker)
    control = _call(found, lambda: BeatControl(found))
    task_id = _call(found, lambda: control.run_now(name))
    emit({"name": name, "task": control.definition(name).task, "task_id": task_id}, as_json)


@app.command("enable")
def enable(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="entry name"),
    app_spec: str = AppOpt,
    broker: str = BrokerOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Enable an entry: it fires next at its first slot from now (missed slots are not sent)."""
    found = _app(ctx, app_spec, broker)
    control = _call(found, lambda: BeatControl(found))
    emit(_call(found, lambda: control.enable(name)), as_json)


@app.command("disable")
def disable(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="entry name"),
    app_spec: str = AppOpt,
    broker: str = BrokerOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Disable an entry: its slots are skipped (not queued up) until it is enabled again."""
    found = _app(ctx, app_spec, broker)
    control = _call(found, lambda: BeatControl(found))
    emit(_call(found, lambda: control.disable(name)), as_json)
