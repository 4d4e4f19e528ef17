"""tqctl status, tqctl inspect, tqctl control: Celery's remote-control verbs, scriptable.

Requests go out on the celery.pidbox fanout, so Celery 5 workers answer too. Exit codes:
0 ok, 1 a worker answered with an error (or the broker failed), 2 usage, 69 no worker replied.
"""

from __future__ import annotations

import json
import math
from typing import Any

import typer

from tqctl.commands.common import (
    AsJson,
    Broker,
    Destination,
    DryRun,
    Timeout,
    Yes,
    confirm,
    destinations,
    iso,
    no_reply,
    node_rows,
    parse_rate,
    parse_signal,
    send_revoke,
    session,
    usage,
)
from tqctl.commands.values import name_problem
from tqctl.output import EXIT_ERROR, emit_json, emit_line

INSPECT = ("active", "reserved", "scheduled", "revoked", "registered", "stats", "active_queues", "conf", "query_task")
REQUIRED = object()
# command -> ((argument name, type, default or REQUIRED), ...), in the order they are typed.
CONTROL: dict[str, tuple[tuple[str, type, Any], ...]] = {
    "pool_grow": (("n", int, 1),),
    "pool_shrink": (("n", int, 1),),
    "autoscale": (("max", int, REQUIRED), ("min", int, REQUIRED)),
    "rate_limit": (("task_name", str, REQUIRED), ("rate_limit", str, REQUIRED)),
    "time_limit": (("task_name", str, REQUIRED), ("hard", float, REQUIRED), ("soft", float, None)),
    "add_consumer": (("queue", str, REQUIRED),),
    "cancel_consumer": (("queue", str, REQUIRED),),
    "enable_events": (),
    "disable_events": (),
    "heartbeat": (),
    "shutdown": (),
    "pool_restart": (),
    "drain": (("timeout", float, 60.0),),
    "revoke": (("task_id", str, REQUIRED),),  # ID...
    "terminate": (("signal", str, REQUIRED), ("task_id", str, REQUIRED)),  # SIGNAL ID...
}
STOPS_WORKERS = {"shutdown", "drain"}
REVOKES = {"revoke", "terminate"}


def canonical(name: str) -> str:
    """pool-grow and pool_grow are the same command."""
    return name.strip().lower().replace("-", "_")


# -- status --------------------------------------------------------------------------------------
def status(broker: Broker = "", timeout: Timeout = 1.0, destination: Destination = "", as_json: AsJson = False) -> None:
    """Ping the workers: one name: OK line each, then the count. Exit 69 when none replies."""
    with session(broker, timeout=timeout + 1.0) as cluster:
        rows = node_rows(cluster.control.ping(timeout=timeout, destination=destinations(destination)))
    doc = {"nodes": rows, "count": len(rows)}
    if not rows:
        no_reply(timeout, as_json, doc)
    if as_json:
        emit_json(doc)
    else:
        for row in rows:
            emit_line(f"{row['name']}: {'OK' if row['ok'] else 'ERROR ' + str(row['error'])}")
        emit_line(f"\n{len(rows)} node{'' if len(rows) == 1 else 's'} online.")
    if any(not r["ok"] for r in rows):
        raise typer.Exit(EXIT_ERROR)


# -- inspect -------------------------------------------------------------------------------------
def inspect(
    method: str = typer.Argument(
        ...,
        help="active | reserved | scheduled | revoked | registered | stats | "
        "active-queues | conf | query-task | a custom command's name",
    ),
    args: list[str] = typer.Argument(
        None, help="task ids for query-task; attribute names for registered; KEY=VALUE for a custom command"
    ),
    broker: Broker = "",
    timeout: Timeout = 1.0,
    destination: Destination = "",
    as_json: AsJson = False,
) -> None:
    """Ask workers what they hold (Celery's inspect). Exit 69 when no worker replies.

    A name not listed is sent as a custom inspect command (``@inspect_command``), its arguments
    given as KEY=VALUE. ``scheduled`` also lists the ETA tasks waiting in the broker's delayed set,
    which no worker holds (and so none lists) until they are due.
    """
    name = canonical(method)
    arguments = _inspect_arguments(name, list(args or [])) if name in INSPECT else custom_arguments(list(args or []))
    with session(broker, timeout=timeout + 1.0) as cluster:
        replies = cluster.control.broadcast(name, arguments, destination=destinations(destination), timeout=timeout)
        held = broker_delayed(cluster) if name == "scheduled" else None
    rows = node_rows(replies)
    _refuse_unknown("inspect", name, INSPECT, rows)
    doc: dict[str, Any] = {"method": name, "nodes": rows, "count": len(rows)}
    if held is not None:
        doc["broker"] = held
    if not rows:
        if held is not None and not as_json:
            _print_delayed(held)  # ETA tasks wait in the broker whether or not a worker is up
        no_reply(timeout, as_json, doc)
    if as_json:
        emit_json(doc)
    else:
        for row in rows:
            _print_node(row, _inspect_lines(name, row["reply"]))
        if held is not None:
            _print_delayed(held)
    if any(not r["ok"] for r in rows):
        raise typer.Exit(EXIT_ERROR)


def _refuse_unknown(verb: str, name: str, known: Any, rows: list[dict[str, Any]]) -> None:
    """A name that is neither ours nor a custom command any worker serves: every worker answered
    Celery's ``KeyError('name')``. That is a mistyped command (a usage error naming the known ones),
    not a worker failing (it printed ``ERROR KeyError('bogus')`` and exited 1)."""
    if name in known or not rows or any(r["ok"] or r["error"] != f"KeyError({name!r})" for r in rows):
        return
    names = ", ".join(n.replace("_", "-") for n in known)
    usage(f"unknown {verb} command {name.replace('_', '-')!r}: use {names}, or a custom command the workers serve")


def custom_arguments(args: list[str]) -> dict[str, Any]:
    """KEY=VALUE words → a custom command's keyword arguments; VALUE is JSON when it parses."""
    arguments: dict[str, Any] = {}
    for word in args:
        key, eq, text = word.partition("=")
        if not eq or not key.isidentifier():
            usage(f"custom command arguments are KEY=VALUE (got {word!r})")
        try:
            arguments[key] = json.loads(text)
        except ValueError:
            arguments[key] = text
    return arguments


def broker_delayed(cluster: Any, limit: int = 1000) -> dict[str, Any] | None:
    """ETA tasks parked in our broker's delayed set, soonest first (None: workers hold them, as on AMQP)."""
    if cluster.is_amqp:
        return None
    rows, total = cluster.view.delayed(limit)
    return {"delayed": [{**row, "eta": iso(row["eta"])} for row in rows], "count": total}


def _print_delayed(held: dict[str, Any]) -> None:
    emit_line(f"-> broker (delayed set, no worker holds these until due): {held['count']} task(s)")
    for task in held["delayed"]:
        emit_line(f"    * {task['eta']} {task['name']}[{task['id']}] queue={task['queue']} args={task['args']}")


def _inspect_arguments(name: str, args: list[str]) -> dict[str, Any]:
    if name == "query_task":
        if not args:
            usage("query-task needs one or more task ids")
        return {"ids": args}
    if name == "registered":
        return {"taskinfoitems": args}
    if args:
        usage(f"inspect {name.replace('_', '-')} takes no arguments (got {' '.join(args)})")
    return {"with_defaults": False} if name == "conf" else {}


def _inspect_lines(name: str, reply: Any) -> list[str]:
    if isinstance(reply, list):
        if not reply:
            return ["- empty -"]
        return [_describe_item(name, item) for item in reply]
    if isinstance(reply, dict) and name == "query_task":
        return [f"{tid}: {info[0]} {info[1].get('name')}" for tid, info in reply.items()] or ["- empty -"]
    return json.dumps(reply, indent=2, default=str).splitlines()


def _describe_item(name: str, item: Any) -> str:
    if not isinstance(item, dict):
        return f"* {item}"
    if name == "scheduled":
        request = item.get("request") or {}
        return f"* {item.get('eta')} {request.get('name')}[{request.get('id')}] args={request.get('args')}"
    if name == "active_queues":
        return f"* {item.get('name')} (routing key {item.get('routing_key')})"
    pid = f" pid={item['worker_pid']}" if item.get("worker_pid") else ""
    return f"* {item.get('name')}[{item.get('id')}] args={item.get('args')} kwargs={item.get('kwargs')}{pid}"


def _print_node(row: dict[str, Any], lines: list[str]) -> None:
    if not row["ok"]:
        emit_line(f"-> {row['name']}: ERROR {row['error']}")
        return
    emit_line(f"-> {row['name']}: OK")
    for line in lines:
        emit_line(f"    {line}")


# -- control -------------------------------------------------------------------------------------
def control(
    command: str = typer.Argument(
        ...,
        help="pool-grow N | pool-shrink N | autoscale MAX MIN | rate-limit NAME RATE"
        " | time-limit NAME HARD [SOFT] | add-consumer Q | cancel-consumer Q | "
        "enable-events | disable-events | heartbeat | pool-restart | shutdown | "
        "drain [TIMEOUT]"
        " | revoke ID... | terminate SIGNAL ID... | a custom command's name",
    ),
    args: list[str] = typer.Argument(None, help="the command's arguments (KEY=VALUE for a custom command)"),
    broker: Broker = "",
    timeout: Timeout = 1.0,
    destination: Destination = "",
    yes: Yes = False,
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Tell workers to change (Celery's control). shutdown, drain, revoke and terminate ask first.

    Exit 0 when every addressed worker accepted, 1 when one answered with an error, 69 when none replied.
    """
    name = canonical(command)
    # A name not listed is a custom command (``@control_command``): KEY=VALUE arguments, sent as is.
    arguments = parse_control_args(name, list(args or [])) if name in CONTROL else custom_arguments(list(args or []))
    dest = destinations(destination)
    with session(broker, timeout=timeout + 1.0) as cluster:
        if name in REVOKES:
            rows = _control_revoke(cluster, name, arguments, dest, timeout, yes, dry_run, as_json)
        elif name in STOPS_WORKERS:
            rows = _control_stop(cluster, name, arguments, dest, timeout, yes, dry_run, as_json)
        else:
            rows = node_rows(cluster.control.broadcast(name, arguments, destination=dest, timeout=timeout))
    if rows is None:  # a dry run: already printed
        return
    _refuse_unknown("control", name, CONTROL, rows)
    doc = {"command": name, "arguments": arguments, "nodes": rows, "count": len(rows)}
    if not rows and name not in REVOKES:
        no_reply(timeout, as_json, doc)
    if as_json:
        emit_json(doc)
    else:
        for row in rows:
            _print_control(row)
    if any(not r["ok"] for r in rows):
        raise typer.Exit(EXIT_ERROR)


def parse_control_args(name: str, args: list[str]) -> dict[str, Any]:
    """Positional words → the named arguments Celery's workers expect; mistakes are usage errors."""
    spec = CONTROL[name]
    if name in REVOKES:
        if name == "terminate":
            if len(args) < 2:
                usage("terminate needs SIGNAL ID...")
            return {"task_id": args[1:], "terminate": True, "signal": parse_signal(args[0])}
        if not args:
            usage("revoke needs one or more task ids")
        return {"task_id": args, "terminate": False, "signal": "SIGTERM"}
    if len(args) > len(spec):
        usage(f"{name.replace('_', '-')} takes at most {len(spec)} argument(s): {_signature(name)}")
    arguments: dict[str, Any] = {}
    for i, (key, kind, default) in enumerate(spec):
        if i >= len(args):
            if default is REQUIRED:
                usage(f"{name.replace('_', '-')} needs {_signature(name)}")
            arguments[key] = default
            continue
        try:
            arguments[key] = kind(args[i])
        except ValueError:
            usage(
                f"{name.replace('_', '-')}: {key} must be a{'n integer' if kind is int else ' number'}, not {args[i]!r}"
            )
    if problem := _argument_problem(name, arguments):
        usage(f"{name.replace('_', '-')}: {problem}")
    if name == "rate_limit":
        if arguments["rate_limit"] not in ("0", "none"):
            parse_rate(arguments["rate_limit"])
    return arguments


def _argument_problem(name: str, arguments: dict[str, Any]) -> str | None:
    """What a worker would accept but cannot mean: a pool grown by 0, autoscale with MAX < MIN, an
    empty queue or task name, a limit of nan or -1 seconds."""
    if name in ("pool_grow", "pool_shrink") and arguments["n"] < 1:
        return f"N must be 1 or more, not {arguments['n']}"
    if name == "autoscale" and not (arguments["max"] >= max(arguments["min"], 1) and arguments["min"] >= 0):
        return f"needs MAX >= MIN >= 0 and MAX >= 1, not {arguments['max']} {arguments['min']}"
    for key, what in (("queue", "queue name"), ("task_name", "task name")):
        if key in arguments and (problem := name_problem(arguments[key], what)):
            return problem
    for key in ("hard", "soft", "timeout"):
        seconds = arguments.get(key)
        if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
            return f"{key} must be a number of seconds >= 0, not {seconds}"
    return None


def _signature(name: str) -> str:
    words = [key.upper() if default is REQUIRED else f"[{key.upper()}]" for key, _, default in CONTROL[name]]
    return " ".join(words) or "(no arguments)"


def _control_revoke(
    cluster: Any,
    name: str,
    arguments: dict[str, Any],
    dest: list[str] | None,
    timeout: float,
    yes: bool,
    dry_run: bool,
    as_json: bool,
) -> list[dict[str, Any]] | None:
    if dry_run:
        doc = {"command": name, "arguments": arguments, "dry_run": True, "task_ids": arguments["task_id"]}
        _print_dry_run(doc, as_json, dest)
        return None
    return send_revoke(cluster, arguments["task_id"], arguments["terminate"], arguments["signal"], dest, timeout, yes)


def _control_stop(
    cluster: Any,
    name: str,
    arguments: dict[str, Any],
    dest: list[str] | None,
    timeout: float,
    yes: bool,
    dry_run: bool,
    as_json: bool,
) -> list[dict[str, Any]] | None:
    """shutdown / drain: find the workers first, so we can say exactly whom we would stop."""
    targets = [r["name"] for r in node_rows(cluster.control.ping(timeout=timeout, destination=dest))]
    if not targets:  # (a dry run's document says it is one, as with workers to name)
        dry: dict[str, Any] = {"dry_run": True} if dry_run else {}
        no_reply(timeout, as_json, {"command": name, "arguments": arguments, **dry, "nodes": [], "count": 0})
    if dry_run:
        _print_dry_run({"command": name, "arguments": arguments, "dry_run": True, "nodes": targets}, as_json)
        return None
    confirm(f"{name} {len(targets)} worker(s): {', '.join(targets)}?", yes)
    replies = node_rows(cluster.control.broadcast(name, arguments, destination=targets, timeout=timeout))
    if name != "shutdown":
        return replies
    # Celery's shutdown never replies; only a worker that refuses it (allow-list) answers.
    refused = {r["name"]: r for r in replies}
    return [
        refused.get(node) or {"name": node, "ok": True, "reply": {"ok": "shutdown requested"}, "error": None}
        for node in targets
    ]


def _print_dry_run(doc: dict[str, Any], as_json: bool, dest: list[str] | None = None) -> None:
    """The workers it would go to, one a line; for a revoke, whom it goes to, then the task ids
    (they were listed under "to:" as if they were workers)."""
    if as_json:
        emit_json(doc)
        return
    what = f"dry run: would send {doc['command']} {json.dumps(doc['arguments'])}"
    if "task_ids" in doc:
        emit_line(f"{what} to {', '.join(dest) if dest else 'every worker'}, for these tasks:")
    else:
        emit_line(f"{what} to:")
    for item in doc.get("nodes") or doc.get("task_ids") or []:
        emit_line(f"  {item}")


def _print_control(row: dict[str, Any]) -> None:
    if not row["ok"]:
        emit_line(f"-> {row['name']}: ERROR {row['error']}")
        return
    reply = row["reply"]
    text = reply.get("ok", json.dumps(reply)) if isinstance(reply, dict) else (reply or "")
    emit_line(f"-> {row['name']}: OK {text}".rstrip())
