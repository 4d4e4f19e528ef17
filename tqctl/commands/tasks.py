"""Task verbs: tasks, task, tail, call, result, revoke (the failure inbox's are in failures.py).

History and failures come from what the workers record in the broker (engine.history), so a
console started late still sees what ran; tail follows the live event stream.
"""

from __future__ import annotations

import fnmatch
import json
import time
from typing import Annotated, Any

import typer

from engine import states
from engine.events.state import TASK_EVENT_STATES, ClusterState
from tqctl.commands.common import (
    AsJson,
    Backend,
    Broker,
    BrokerTimeout,
    Cluster,
    Destination,
    DryRun,
    Timeout,
    Yes,
    deadline,
    destinations,
    iso,
    parse_signal,
    parse_since,
    send_revoke,
    session,
    usage,
)
from tqctl.commands.values import (
    finite_option,
    future_seconds,
    name_argument,
    task_id_argument,
    task_state_option,
)
from tqctl.output import emit, emit_json, emit_line, emit_table, fail, note
from tqctl.whereabouts import locate, nowhere_line

TASK_COLUMNS = ["id", "name", "state", "worker", "finished", "runtime", "args", "result", "exception"]
RECORD_KEYS = (
    "id",
    "name",
    "state",
    "worker",
    "queue",
    "args",
    "kwargs",
    "result",
    "exception",
    "retries",
    "runtime",
    "root_id",
    "parent_id",
    "retry_of",
)
HISTORY_SCAN = 1_000_000  # "all of it": the history itself is bounded by tqctl_history_size
SCHEDULED = "SCHEDULED"  # `task`'s state for one waiting for its ETA (no Celery state says it)
_EVENT_NOISE = ("utcoffset", "pid", "clock", "local_received", "timestamp", "type", "uuid", "hostname")

TaskId = Annotated[str, typer.Argument(callback=task_id_argument, help="A task id.")]
Name = Annotated[str, typer.Option("--name", help="Task name, or a glob such as 'shop.*'.")]


def named(value: Any, pattern: str) -> bool:
    """--name's test: no pattern matches everything; else a glob, case-sensitive."""
    return not pattern or fnmatch.fnmatchcase(str(value or ""), pattern)


# -- tasks / task --------------------------------------------------------------------------------
def _record_row(r: dict[str, Any]) -> dict[str, Any]:
    """A history record with stable keys and ISO times (the traceback stays for task ID)."""
    return {**{k: r.get(k) for k in RECORD_KEYS}, "started": iso(r.get("started")), "finished": iso(r.get("finished"))}


def tasks(
    state: Annotated[
        str, typer.Option("--state", callback=task_state_option, help="SUCCESS, FAILURE, RETRY, REVOKED, ...")
    ] = "",
    name: Name = "",
    worker: Annotated[str, typer.Option("--worker", help="Node name (w1@host, or just w1).")] = "",
    since: Annotated[str, typer.Option("--since", help="30s, 10m, 2h, 1d or an ISO-8601 time.")] = "",
    limit: Annotated[int, typer.Option("--limit", min=0, max=HISTORY_SCAN, help="At most this many rows.")] = 50,
    broker: Broker = "",
    timeout: BrokerTimeout = 10.0,
    as_json: AsJson = False,
) -> None:
    """Recorded task runs, newest first (the history workers keep in the broker)."""
    since_ts = parse_since(since, time.time()) if since else None
    with session(broker, timeout=timeout) as cluster:
        records = cluster.history.records(HISTORY_SCAN if (state or name or worker or since) else limit)
    rows = [
        _record_row(r)
        for r in records
        if (not state or str(r.get("state")) == state.upper())
        and named(r.get("name"), name)
        and (not worker or worker in (r.get("worker"), str(r.get("worker")).split("@")[0]))
        and (since_ts is None or (r.get("finished") or 0) >= since_ts)
    ][: max(limit, 0)]
    if as_json:
        emit_json({"tasks": rows, "count": len(rows)})
    else:
        emit_table(rows, TASK_COLUMNS)


def task(
    task_id: TaskId, broker: Broker = "", backend: Backend = "", timeout: BrokerTimeout = 10.0, as_json: AsJson = False
) -> None:
    """Everything known about one task: its recorded runs, failure and traceback, stored result, timeline."""
    with session(broker, backend, timeout) as cluster:
        records = cluster.history.records(HISTORY_SCAN)
        failure = cluster.history.failure(task_id)
        store = cluster.app.backend
        meta = store.get_meta(task_id) if store is not None else None
        done = (meta or {}).get("status") in states.READY_STATES
        waiting = None if done else cluster.view.parked(task_id)  # waiting out its ETA
        parks = not (cluster.is_amqp or cluster.is_sqs)  # (RabbitMQ and SQS: workers hold ETA tasks)
        runs = [_record_row(r) for r in reversed(records) if r.get("id") == task_id]  # oldest first
        queued = held = None
        if not runs and failure is None and meta is None and waiting is None:
            queued = locate(cluster.view, task_id)
            held = None if queued["queue"] or cluster.is_sqs else _held_by(cluster, task_id)
            if not queued["queue"] and held is None:
                fail(_nowhere(task_id, queued, parks))
    latest = runs[-1] if runs else _record_row(failure or waiting or (queued or {}).get("message") or {"id": task_id})
    doc = {
        **{k: latest[k] for k in ("id", "name", "worker", "queue", "args", "kwargs", "retry_of")},
        # Waiting out its countdown, with nothing recorded yet: SCHEDULED, as `inspect scheduled` lists it.
        "state": (meta or {}).get("status")
        or latest["state"]
        or (SCHEDULED if waiting else _held_state(held) if queued else None),
        "eta": iso(waiting["eta"]) if waiting else None,
        "result": _result_doc(task_id, meta) if meta is not None else None,
        "runs": runs,
        "failure": _failure_doc(failure),
        "retried_as": sorted({r["id"] for r in records if r.get("retry_of") == task_id}),
        "timeline": _timeline(runs, failure),
        # Known to no worker yet: where it waits (position 1 is next out), or which worker holds it.
        "queued": {k: queued[k] for k in ("queue", "position", "depth")} if queued and queued["queue"] else None,
        "held_by": held,
    }
    if as_json:
        emit_json(doc)
        return
    shown = {k: (v or None) if isinstance(v, list) else v for k, v in doc.items()}  # no retries: "-", as the rest
    where = doc["queued"] or {}
    shown["queued"] = where and f"in {where['queue']}, position {where['position']} of {where['depth']}"
    shown["held_by"] = held and f"{held['worker']} ({held['as']})"
    emit({k: v for k, v in shown.items() if k not in ("runs", "failure", "timeline", "result")}, False)
    emit_line(f"result: {json.dumps((doc['result'] or {}).get('result'), default=str)}")
    emit_line("timeline:")
    for step in doc["timeline"]:
        emit_line(f"  {step['time']}  {step['event']:<10} {step['worker'] or '-'}  {step['detail'] or ''}".rstrip())
    traceback = (failure or {}).get("traceback") or (meta or {}).get("traceback")
    if traceback:
        emit_line("traceback:\n" + traceback.rstrip())


def _held_by(cluster: Cluster, task_id: str) -> dict[str, Any] | None:
    """The worker holding ``task_id`` now (taken from its queue, not finished, so not recorded)."""
    for reply in cluster.control.broadcast("query_task", {"ids": [task_id]}, timeout=1.0):
        for worker, found in reply.items():
            if isinstance(found, dict) and isinstance(found.get(task_id), list) and found[task_id]:
                return {"worker": worker, "as": found[task_id][0]}  # "active" or "reserved"
    return None


def _held_state(held: dict[str, Any] | None) -> str:
    if held is None:
        return states.PENDING  # waiting in a queue
    return states.STARTED if held["as"] == "active" else states.RECEIVED


def _nowhere(task_id: str, queued: dict[str, Any], parks: bool) -> str:
    """What is known of a task found nowhere: Celery's PENDING for it never ends, with no hint why."""
    where = (
        "the failure inbox, the result backend or the broker's delayed set"
        if parks
        else "the failure inbox or the result backend"
    )
    return (
        f"no record of task {task_id}: not in the history, {where}, held by no worker, "
        f"{nowhere_line(queued)}: purged, expired or deleted before a worker took it, sent to another "
        "broker, or its records were trimmed"
    )


def _timeline(runs: list[dict[str, Any]], failure: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """sent (when the original message is kept: failures), then started and finished per recorded run."""
    steps = []
    sent = _sent_at(failure)
    if sent:
        steps.append({"time": sent, "event": "sent", "worker": None, "detail": f"queue={(failure or {}).get('queue')}"})
    for run in runs:
        if run["started"]:
            steps.append({"time": run["started"], "event": "started", "worker": run["worker"], "detail": None})
        detail = run["exception"] or (f"result={run['result']}" if run["result"] is not None else None)
        steps.append(
            {"time": run["finished"], "event": str(run["state"]).lower(), "worker": run["worker"], "detail": detail}
        )
    return steps


def _sent_at(failure: dict[str, Any] | None) -> str | None:
    try:
        headers = json.loads((failure or {}).get("raw") or "{}").get("headers") or {}
    except (ValueError, AttributeError):
        return None
    return iso(headers.get("sent_at"))


def _failure_doc(failure: dict[str, Any] | None) -> dict[str, Any] | None:
    if failure is None:
        return None
    doc = {k: v for k, v in failure.items() if k != "raw"}
    doc.update(
        started=iso(failure.get("started")),
        finished=iso(failure.get("finished")),
        original_message=bool(failure.get("raw")),
    )
    return doc


def _result_doc(task_id: str, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": task_id,
        "state": meta.get("status"),
        "ready": meta.get("status") in states.READY_STATES,
        "result": meta.get("result"),
        "traceback": meta.get("traceback"),
        "date_done": meta.get("date_done"),
    }


# -- tail ----------------------------------------------------------------------------------------
def tail(
    state: Annotated[
        str, typer.Option("--state", callback=task_state_option, help="Only events giving this state.")
    ] = "",
    name: Name = "",
    count: Annotated[int, typer.Option("--count", min=0, help="Stop after N events.")] = 0,
    for_: Annotated[
        float, typer.Option("--for", "--timeout", min=0, callback=finite_option, help="Stop after SECONDS.")
    ] = 0.0,
    heartbeats: Annotated[bool, typer.Option("--heartbeats", help="Show worker heartbeats too.")] = False,
    broker: Broker = "",
    as_json: AsJson = False,
) -> None:
    """Follow live events until interrupted (JSON Lines with --json).

    Shows task events and workers going online/offline. --name matches tasks whose received (or sent)
    event was seen by this tail, since later events do not carry the name.
    """
    deadline = time.monotonic() + for_ if for_ > 0 else None
    shown = 0
    model = ClusterState(max_tasks=50_000)
    with session(broker) as cluster:
        receiver = cluster.events()
        note("tqctl: following events (Ctrl-C to stop)")  # subscribed: from here on nothing is missed
        try:
            while (count <= 0 or shown < count) and (deadline is None or time.monotonic() < deadline):
                left = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
                for event in receiver.poll(left):
                    model.apply(event)
                    row = _event_row(event, model)
                    if (
                        (heartbeats or row["type"] != "worker-heartbeat")
                        and named(row["name"], name)
                        and (not state or row["state"] == state.upper())
                    ):
                        _print_event(row, as_json)
                        shown += 1
                        if 0 < count <= shown:
                            break
        except KeyboardInterrupt:
            pass
        finally:
            receiver.close()


def _event_row(event: dict[str, Any], model: ClusterState) -> dict[str, Any]:
    etype, uuid = str(event.get("type")), event.get("uuid")
    known = model.task(uuid) if isinstance(uuid, str) else None
    return {
        "type": etype,
        "state": TASK_EVENT_STATES.get(etype),
        "uuid": uuid,
        "name": event.get("name") or (known.name if known else None),
        "hostname": event.get("hostname"),
        "timestamp": iso(event.get("timestamp")),
        "received_at": iso(event.get("local_received")),
        **{k: v for k, v in event.items() if k not in _EVENT_NOISE and k != "name"},
    }


def _print_event(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(row)
        return
    subject = f"{row['name'] or '?'}[{row['uuid']}]" if row["uuid"] else ""
    extra = " ".join(f"{k}={row[k]}" for k in ("result", "exception", "runtime", "args") if row.get(k))
    emit_line(f"{row['timestamp']} {row['type']:<16} {subject} {row['hostname']} {extra}".rstrip())


# -- call / result -------------------------------------------------------------------------------
def _json_arg(text: str, kind: type, option: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        usage(f"{option} is not valid JSON ({exc})")
    except RecursionError:
        usage(f"{option} nests too deeply")
    if not isinstance(value, kind):
        usage(f"{option} must be a JSON {'array' if kind is list else 'object'}, not {text!r}")
    return value


def call(
    name: Annotated[str, typer.Argument(callback=name_argument("task name"))],
    args: Annotated[str, typer.Option("--args", "-a", help="Positional arguments, a JSON array.")] = "[]",
    kwargs: Annotated[str, typer.Option("--kwargs", "-k", help="Keyword arguments, a JSON object.")] = "{}",
    countdown: Annotated[
        float | None, typer.Option("--countdown", callback=future_seconds, help="Run no sooner than N seconds.")
    ] = None,
    eta: Annotated[str, typer.Option("--eta", help="Run no sooner than this ISO-8601 time.")] = "",
    expires: Annotated[
        float | None, typer.Option("--expires", callback=future_seconds, help="Discard if not started in N seconds.")
    ] = None,
    queue: Annotated[
        str, typer.Option("--queue", "-Q", callback=name_argument("queue name"), help="Queue (default: celery).")
    ] = "",
    priority: Annotated[int | None, typer.Option("--priority", min=0, max=9, help="0 (first) to 9.")] = None,
    broker: Broker = "",
    timeout: BrokerTimeout = 10.0,
    as_json: AsJson = False,
) -> None:
    """Send a task by name (no app code needed) and print its id."""
    positional, named = _json_arg(args, list, "--args"), _json_arg(kwargs, dict, "--kwargs")
    if eta:
        from engine.protocol.task import parse_time

        try:
            parse_time(eta)
        except ValueError:
            usage(f"--eta {eta!r} is not an ISO-8601 time")
    with session(broker, timeout=timeout) as cluster, deadline(timeout):
        sent = cluster.app.send_task(
            name,
            positional,
            named,
            countdown=countdown,
            eta=eta or None,
            expires=expires,
            queue=queue or None,
            priority=priority,
        )
    if as_json:
        emit_json(
            {
                "id": sent.id,
                "name": name,
                "queue": queue or "celery",
                "countdown": countdown,
                "eta": eta or None,
                "priority": priority,
            }
        )
    else:
        emit_line(sent.id)


def result(
    task_id: TaskId,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it is ready.")] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0, callback=finite_option, help="Seconds to --wait (default: forever)."),
    ] = None,
    broker: Broker = "",
    backend: Backend = "",
    as_json: AsJson = False,
) -> None:
    """A task's state and result from the result backend. Exit 1 when --wait times out."""
    with session(broker, backend) as cluster:
        store = cluster.app.backend
        if store is None:
            fail("no result backend: pass --backend or set TQCTL_BACKEND")
        meta = store.wait(task_id, timeout) if wait else store.get_meta(task_id)
    doc = _result_doc(task_id, meta or {"status": states.PENDING})
    if as_json:
        emit_json(doc)
    else:
        emit({k: v for k, v in doc.items() if v is not None}, False)
    if wait and not doc["ready"]:
        fail(f"task {task_id} not ready after {timeout:g}s")


# -- revoke ---------------------------------------------------------------------------------------
def revoke(
    task_ids: Annotated[list[str], typer.Argument(callback=task_id_argument, help="Task ids.")],
    terminate: Annotated[bool, typer.Option("--terminate", help="Also kill running ones.")] = False,
    signal: Annotated[str, typer.Option("--signal", "-s", help="Signal for --terminate.")] = "SIGTERM",
    broker: Broker = "",
    timeout: Timeout = 1.0,
    destination: Destination = "",
    yes: Yes = False,
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Revoke tasks: queued ones never run; --terminate also kills running ones.

    Revokes are kept in the broker for 3 h, so workers started later still skip them. A terminated
    task ends REVOKED. Exit 0 even when no worker replied (the stored revoke still applies).
    """
    sig = parse_signal(signal)
    doc: dict[str, Any] = {"task_ids": task_ids, "terminate": terminate, "signal": sig}
    if dry_run:
        emit({**doc, "dry_run": True}, as_json)
        return
    with session(broker, timeout=timeout + 1.0) as cluster:
        rows = send_revoke(cluster, task_ids, terminate, sig, destinations(destination), timeout, yes)
    if as_json:
        emit_json({**doc, "nodes": rows})
        return
    for row in rows:
        emit_line(f"-> {row['name']}: {'OK ' + str((row['reply'] or {}).get('ok', '')) if row['ok'] else row['error']}")
