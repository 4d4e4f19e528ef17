"""``tqctl health``: a probe for Kubernetes, systemd or a load balancer, with documented exit codes.

``--file PATH`` reads the worker's health file (no network: the cheap liveness probe);
``-d NODE`` pings that worker through the broker (readiness: it is connected and answering);
with neither, the cluster answers when at least one worker replies to a ping.
"""

from __future__ import annotations

import typer

from engine.exceptions import BrokerUnavailable, ImproperlyConfigured
from tqctl.commands.common import MAX_TIMEOUT
from tqctl.commands.values import finite_option, url_option
from tqctl.health import HEALTHY, NO_REPLY, Check, check_file
from tqctl.output import EXIT_ERROR, EXIT_USAGE, emit_json, emit_line, fail


def health(
    destination: str = typer.Option("", "-d", "--destination", help="worker node name to ping, e.g. w1@host"),
    file: str = typer.Option("", "--file", "-f", help="a worker's --health-file to check (no network)"),
    max_age: float = typer.Option(
        10.0, "--max-age", min=0.1, callback=finite_option, help="seconds after which the file is stale"
    ),
    timeout: float = typer.Option(
        2.0,
        "--timeout",
        "-t",
        min=0.1,
        max=MAX_TIMEOUT,
        callback=finite_option,
        help="seconds to wait for the ping reply",
    ),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    broker: str = typer.Option("", "--broker", envvar="TQCTL_BROKER", callback=url_option, help="broker URL"),
) -> None:
    """Exit 0 if healthy; 3 stale health file, 4 no health file, 69 no reply, 1 broker unreachable."""
    checks: list[Check] = []
    if file:
        checks.append(check_file(file, max_age))
    if destination or not file:
        checks.append(_ping(destination, timeout, broker))
    code = next((c.code for c in checks if c.code != HEALTHY), HEALTHY)
    if as_json:
        emit_json({"healthy": code == HEALTHY, "code": code, "checks": [c.as_dict() for c in checks]})
    else:
        for c in checks:
            emit_line(f"{'ok' if c.code == HEALTHY else 'FAIL'} {c.name}: {c.detail}")
    raise typer.Exit(code)


def _ping(destination: str, timeout: float, broker: str) -> Check:
    if destination and "@" not in destination:
        fail(f"-d takes a node name like w1@host, not {destination!r}", EXIT_USAGE)
    from engine.broker.inspect import open_fanout
    from engine.control import Control
    from tqctl.client import resolve_broker_url

    name = f"ping {destination}" if destination else "ping"
    try:
        url = resolve_broker_url(broker or None)
        control = Control(url, fanout=open_fanout(url))  # (on AMQP: celery.pidbox)
        try:
            replies = control.ping(timeout=timeout, destination=[destination] if destination else None)
        finally:
            control.close()
    except (BrokerUnavailable, ImproperlyConfigured, OSError) as exc:
        return Check(name, EXIT_ERROR, f"broker unreachable: {exc}")
    except Exception as exc:  # redis errors and friends: one line, never a traceback
        return Check(name, EXIT_ERROR, f"broker unreachable: {type(exc).__name__}: {exc}")
    nodes = sorted(node for reply in replies for node in reply)
    if not nodes:
        who = destination or "any worker"
        return Check(name, NO_REPLY, f"no reply from {who} within {timeout:g}s")
    return Check(name, HEALTHY, f"answered: {', '.join(nodes)}")
