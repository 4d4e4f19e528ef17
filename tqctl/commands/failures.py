"""The failure inbox: list it by group, retry failures, discard them.

Workers store each failure's original message (engine.history), so a retry republishes exactly
what was sent; ``discard`` is the console's delete, for scripts.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from engine.protocol.task import MalformedMessage
from tqctl.commands.common import (
    AsJson,
    Broker,
    BrokerTimeout,
    DryRun,
    Yes,
    confirm,
    iso,
    parse_rate,
    session,
    usage,
)
from tqctl.commands.tasks import HISTORY_SCAN, Name, named
from tqctl.commands.values import task_id_argument
from tqctl.output import EXIT_ERROR, emit, emit_json, emit_line, emit_table, fail, note

FAILURE_COLUMNS = ["fingerprint", "task_name", "exc_type", "count", "open", "first_seen", "last_seen", "sample"]
TaskIds = Annotated[list[str] | None, typer.Argument(callback=task_id_argument, help="Failed task ids.")]
Exception_ = Annotated[str, typer.Option("--exception", help="Exception type or text (with --failed).")]
Group = Annotated[str, typer.Option("--group", help="A failure group's fingerprint (with --failed).")]
Limit = Annotated[int, typer.Option("--limit", min=0, help="At most N (with --failed).")]


def failures(
    name: Name = "",
    limit: Annotated[int, typer.Option("--limit", min=0)] = 100,
    broker: Broker = "",
    timeout: BrokerTimeout = 10.0,
    as_json: AsJson = False,
) -> None:
    """The failure inbox grouped by fingerprint (task + exception type + normalised message)."""
    with session(broker, timeout=timeout) as cluster:
        groups = cluster.history.groups()
    rows = [
        {**g, "first_seen": iso(g["first_seen"]), "last_seen": iso(g["last_seen"])}
        for g in groups
        if named(g.get("task_name"), name)
    ][: max(limit, 0)]
    if as_json:
        emit_json({"groups": rows, "count": len(rows)})
    else:
        emit_table(rows, FAILURE_COLUMNS)


def retry(
    task_ids: TaskIds = None,
    failed: Annotated[bool, typer.Option("--failed", help="Retry every matching failure.")] = False,
    name: Name = "",
    exception: Exception_ = "",
    group: Group = "",
    limit: Limit = 0,
    rate: Annotated[str, typer.Option("--rate", help="Throttle, e.g. 50/s (with --failed).")] = "",
    yes: Yes = False,
    dry_run: DryRun = False,
    broker: Broker = "",
    timeout: BrokerTimeout = 10.0,
    as_json: AsJson = False,
) -> None:
    """Republish failed tasks' original messages under new ids linked to the old (retry_of).

    Exit 1 when a named id is not in the failure inbox, or when a retry had to be skipped.
    """
    _one_selection(task_ids, failed)
    per_second = parse_rate(rate) if rate else None
    with session(broker, timeout=timeout) as cluster:
        ids = [f["id"] for f in _chosen(cluster.history, name, exception, group, limit)] if failed else task_ids or []
        missing = [] if failed else [i for i in ids if cluster.history.failure(i) is None]
        if missing:
            fail(f"no failure recorded for {', '.join(missing)} (only tasks in the failure inbox can be retried)")
        if dry_run:
            emit({"dry_run": True, "task_ids": ids, "count": len(ids)}, as_json)
            return
        if failed and ids:
            confirm(f"retry {len(ids)} failed task(s)?", yes)
        doc = _republish(cluster, ids, per_second, progress=failed)
    if as_json:
        emit_json(doc)
    else:
        for pair in doc["retried"]:
            emit_line(f"{pair['id']} (retry of {pair['retry_of']})")
        if not ids:  # stdout stays the new ids alone (scripts read it); the word goes to stderr
            note("tqctl: nothing to retry: no failure in the inbox matches")
    for item in doc["skipped"]:
        note(f"tqctl: skipped {item['id']}: {item['reason']}")
    if doc["skipped"]:
        raise typer.Exit(EXIT_ERROR)


def _one_selection(task_ids: list[str] | None, failed: bool) -> None:
    """``retry`` and ``discard`` act on named ids or on --failed's matches, never both or neither."""
    if failed == bool(task_ids):
        usage("name failed task ids, or pass --failed (with --name/--exception/--group/--limit) - not both")


def _chosen(history: Any, name: str, exception: str, group: str, limit: int) -> list[dict[str, Any]]:
    """Stored failures, newest first, whose task matches --name, whose exception type is (or text
    holds) --exception and whose fingerprint is --group (the console's failure group)."""
    return [
        f
        for f in history.failures(HISTORY_SCAN)
        if named(f.get("name"), name)
        and (not exception or exception == f.get("exc_type") or exception in str(f.get("exception")))
        and (not group or f.get("fingerprint") == group)
    ][: limit or None]


def _republish(cluster: Any, ids: list[str], per_second: float | None, progress: bool) -> dict[str, Any]:
    """Republish one by one; with a rate, consecutive sends are at least 1/rate apart (a late send is
    never made up for with a burst, so no second ever holds more than the rate)."""
    start = time.monotonic()
    pairs, skipped, said, next_at = [], [], start, start
    sends: list[float] = []  # when each send began
    for i, old in enumerate(ids):
        if per_second:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at = time.monotonic() + 1.0 / per_second
        sends.append(time.monotonic())
        try:
            pairs.append({"id": cluster.history.retry(old, cluster.publish, sent_at=time.time()), "retry_of": old})
        except KeyError:  # retried or deleted meanwhile
            skipped.append({"id": old, "reason": "no longer in the failure inbox"})
        except (ValueError, MalformedMessage) as exc:  # an original message we cannot re-read
            skipped.append({"id": old, "reason": str(exc)})
        now = time.monotonic()
        if progress and (now - said >= 1.0 or i + 1 == len(ids)):
            said = now
            rate = _rate(sends)
            note(f"retried {i + 1}/{len(ids)} in {now - start:.1f}s" + (f" ({rate:.1f}/s)" if rate else ""))
    elapsed = time.monotonic() - start
    return {
        "retried": pairs,
        "count": len(pairs),
        "skipped": skipped,
        "elapsed_seconds": round(elapsed, 3),
        "rate_per_second": _rate(sends),
    }


def _rate(sends: list[float]) -> float | None:
    """Sends per second, as --rate means it: N sends span N - 1 intervals (4 sends 0.5 s apart are
    2/s; counting the sends read 2.66). None with fewer than two sends."""
    span = sends[-1] - sends[0] if len(sends) > 1 else 0.0
    return round((len(sends) - 1) / span, 2) if span > 0 else None


def discard(
    task_ids: TaskIds = None,
    failed: Annotated[bool, typer.Option("--failed", help="Discard every matching failure.")] = False,
    name: Name = "",
    exception: Exception_ = "",
    group: Group = "",
    limit: Limit = 0,
    yes: Yes = False,
    dry_run: DryRun = False,
    broker: Broker = "",
    timeout: BrokerTimeout = 10.0,
    as_json: AsJson = False,
) -> None:
    """Delete failures from the inbox: their stored messages are lost (their runs stay in the history).

    Asks first unless --yes. Exit 1 when a named id is not in the failure inbox.
    """
    _one_selection(task_ids, failed)
    with session(broker, timeout=timeout) as cluster:
        history = cluster.history
        if failed:
            chosen = _chosen(history, name, exception, group, limit)
        else:
            found = {i: history.failure(i) for i in task_ids or []}
            missing = [i for i, f in found.items() if f is None]
            if missing:
                fail(f"no failure recorded for {', '.join(missing)} (only the failure inbox can be discarded from)")
            chosen = [f for f in found.values() if f is not None]
        ids = [f["id"] for f in chosen]
        if dry_run:
            emit({"dry_run": True, "task_ids": ids, "count": len(ids)}, as_json)
            return
        if ids:
            confirm(f"discard {len(ids)} failure(s)? Their stored messages are lost", yes)
        discarded = [i for i in ids if history.delete_failure(i)]
        for fingerprint in {f.get("fingerprint") for f in chosen if f.get("fingerprint")}:
            history.forget_group(fingerprint)  # its counters go once none of its failures is left
    gone = [i for i in ids if i not in set(discarded)]  # retried or discarded meanwhile
    if as_json:
        emit_json({"discarded": discarded, "count": len(discarded), "gone": gone})
        return
    emit_line(f"discarded {len(discarded)} failure(s)" + (f"; {len(gone)} already gone" if gone else ""))
