"""tqctl workers and tqctl queues: the cluster at a glance, from replies, events and the broker.

Both listen to the event stream for a moment (--listen / --sample) while they ask the
workers, because some figures exist only there: a worker's load and heartbeat age come from its
worker-heartbeat events, a queue's out-rate from task-received events.
"""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any

import typer

from tqctl.commands.common import (
    AsJson,
    Broker,
    Destination,
    Timeout,
    destinations,
    iso,
    no_reply,
    node_rows,
    session,
    warn,
)
from tqctl.commands.values import finite_option
from tqctl.output import emit, emit_json, emit_table

WORKER_COLUMNS = ["name", "pool", "concurrency", "active", "processed", "load", "heartbeat_age"]
QUEUE_COLUMNS = ["name", "depth", "p0", "p3", "p6", "p9", "delayed", "oldest_age", "consumers", "in_rate", "out_rate"]
DELAYED_SCAN = 10_000


class Listener:
    """Collect events on a thread for seconds while the caller does other round trips."""

    def __init__(self, cluster: Any, seconds: float) -> None:
        self.receiver = cluster.events()  # subscribes now, on this thread: a dead broker fails here
        self.events: list[dict[str, Any]] = []
        self.deadline = time.monotonic() + max(seconds, 0.0)
        self.thread = threading.Thread(target=self._run, name="listen", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while (left := self.deadline - time.monotonic()) > 0:
                self.events.extend(self.receiver.poll(min(left, 0.2)))
        except Exception:  # noqa: BLE001 - a lost stream only means fewer figures; the replies still stand
            pass

    def join(self) -> list[dict[str, Any]]:
        self.thread.join()
        self.receiver.close()
        return self.events


# -- workers -------------------------------------------------------------------------------------
def workers(
    broker: Broker = "",
    timeout: Timeout = 1.0,
    destination: Destination = "",
    listen: Annotated[
        float, typer.Option("--listen", min=0, callback=finite_option, help="Seconds to hear heartbeats.")
    ] = 2.5,
    as_json: AsJson = False,
) -> None:
    """List workers: pool, concurrency, active, processed, load, heartbeat age.

    Where each column comes from: name: ping reply; pool, concurrency, processed, pid, uptime:
    inspect stats; active: inspect active; load, heartbeat_age (seconds): the last worker-heartbeat
    event heard within --listen seconds (empty when none came in that window).
    Exit 69 when no worker replies.
    """
    dest = destinations(destination)
    with session(broker, timeout=timeout + 1.0) as cluster:
        control = cluster.control  # first: on SQS, the one line saying there is no remote control
        heard = Listener(cluster, listen)  # (on AMQP: the celeryev exchange)
        names = [r["name"] for r in node_rows(control.ping(timeout=timeout, destination=dest))]
        stats = control.inspect("stats", timeout=timeout, destination=names) if names else {}
        active = control.inspect("active", timeout=timeout, destination=names) if names else {}
        beats = _heartbeats(heard.join())
    now = time.time()
    silent = sorted(n for n in beats if n not in names and (dest is None or n in dest))
    rows = [_worker_row(n, True, stats.get(n), active.get(n), beats.get(n), now) for n in names]
    rows += [_worker_row(n, False, None, None, beats[n], now) for n in silent]
    doc = {"workers": rows, "count": len(names)}
    if not names:
        no_reply(timeout, as_json, doc)
    if as_json:
        emit_json(doc)
    else:
        emit_table([{**r, "load": " ".join(f"{x:.2f}" for x in r["load"] or []) or None} for r in rows], WORKER_COLUMNS)


def _heartbeats(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last worker event per node; nodes whose last word was worker-offline are left out."""
    last: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.get("type") in ("worker-heartbeat", "worker-online", "worker-offline"):
            last[str(event.get("hostname"))] = event
    return {name: e for name, e in last.items() if e.get("type") != "worker-offline"}


def _worker_row(
    name: str, replied: bool, stats: Any, active: Any, beat: dict[str, Any] | None, now: float
) -> dict[str, Any]:
    stats = stats if isinstance(stats, dict) and "error" not in stats else {}
    pool = stats.get("pool") or {}
    totals = stats.get("total") or {}
    impl = str(pool.get("implementation") or "")
    received = beat.get("local_received") if beat else None
    return {
        "name": name,
        "replied": replied,
        "pool": impl.rsplit(":", 1)[0].rsplit(".", 1)[-1] or None,
        "concurrency": pool.get("max-concurrency"),
        "processes": len(pool.get("processes") or []) if stats else None,
        "active": len(active) if isinstance(active, list) else None,
        "processed": sum(v for v in totals.values() if isinstance(v, int)) if stats else None,
        "pid": stats.get("pid"),
        "uptime": stats.get("uptime"),
        "load": beat.get("loadavg") if beat else None,
        "heartbeat_age": round(now - received, 2) if received else None,
        "last_heartbeat": iso(received),
    }


# -- queues --------------------------------------------------------------------------------------
def queues(
    broker: Broker = "",
    timeout: Timeout = 1.0,
    queue: Annotated[
        list[str] | None, typer.Option("--queue", "-Q", help="Also show this queue (repeatable, or comma-separated).")
    ] = None,
    sample: Annotated[
        float, typer.Option("--sample", min=0, callback=finite_option, help="Seconds to sample rates over.")
    ] = 1.0,
    as_json: AsJson = False,
) -> None:
    """Queue depths (per priority bucket), oldest message age, consumers and in/out rates.

    Queues shown: celery, every queue a worker consumes (inspect active_queues), -Q ones, and on
    Redis every queue holding messages or declared; on RabbitMQ with TQCTL_BROKER_API (its
    management API's URL) every task queue it names.
    On AMQP: depth and consumer count come from RabbitMQ (a passive declare); no rates or ages.
    The age comes from the sent_at header of the oldest message (tqctl clients set it; Celery's do
    not). Out-rate counts task-received events over --sample seconds; in-rate adds the depth change.
    A queue holding messages that no live worker consumes gives a warning on stderr.
    """
    asked = [q.strip() for item in (queue or []) for q in item.split(",") if q.strip()]
    with session(broker, timeout=timeout + 1.0) as cluster:
        # (SQS has no broadcast to ask workers what they consume, as in Celery)
        consumers = {} if cluster.is_sqs else _consumers(cluster.control.broadcast("active_queues", timeout=timeout))
        if cluster.is_amqp or cluster.is_sqs:
            names = sorted({"celery", *consumers, *asked, *_listed_queues(cluster)})
            return _amqp_queues(cluster, names, consumers, as_json)
        names = sorted({"celery", *consumers, *asked, *_listed_queues(cluster)})
        view = cluster.view
        heard = Listener(cluster, sample)
        start, before = time.monotonic(), _depths(view, names)
        events = heard.join()
        after, elapsed = _depths(view, names), max(time.monotonic() - start, 1e-3)
        oldest, delayed = _oldest_sent(view, names), _delayed(view, names)
    now, out = time.time(), _received(events, consumers)
    rows = [
        _queue_row(
            q,
            after[q],
            sum(b["depth"] for b in before[q]),
            delayed.get(q, 0),
            oldest.get(q),
            consumers.get(q, []),
            out.get(q, 0),
            elapsed,
            now,
        )
        for q in names
    ]
    warnings = _listing_failed(cluster) + [
        f"queue {r['name']!r} has {r['depth'] + r['delayed']} message(s) but no live worker consumes it"
        for r in rows
        if (r["depth"] or r["delayed"]) and not r["consumers"]
    ]
    for text in warnings:
        warn(text)
    if as_json:
        emit_json({"queues": rows, "warnings": warnings, "sampled_seconds": round(elapsed, 3)})
    else:
        emit(
            [{**r, **{f"p{b['priority']}": b["depth"] for b in r["buckets"]}} for r in rows],
            False,
            columns=QUEUE_COLUMNS,
        )


def _listed_queues(cluster: Any) -> list[str]:
    """Queues the broker itself can name, also those nobody consumes (a client published to a
    queue no worker reads: without this, plain ``queues`` hid it and its warning). On Redis: the
    declared queues and the lists found by a scan; on RabbitMQ with ``TQCTL_BROKER_API``: the
    queues its management API names (AMQP alone cannot list them). A failure is one warning."""
    if cluster.is_sqs:
        return []
    view = cluster.view
    view.discover()
    return list(view.queue_names())


def _listing_failed(cluster: Any) -> list[str]:
    """``_listed_queues``'s failure (the management API refused us or is away), as a warning of its
    own: it went to stderr alone, and ``--json`` said ``"warnings": []``."""
    error = None if cluster.is_sqs else cluster.view.discovery_error
    return [error] if error else []


def _amqp_queues(cluster: Any, names: list[str], consumers: dict[str, list[str]], as_json: bool) -> None:
    """On RabbitMQ: ready messages and consumer count from a passive declare of each queue, the
    consuming workers' names from their active_queues replies. On SQS: the approximate count of
    visible messages, and no consumers (SQS does not know them: null). The figures that come from
    events or the Redis layout here (rates, ages, delayed) are null on both."""
    rows = [
        {
            "name": name,
            "depth": cluster.broker.queue_depth(name),
            "buckets": [],
            "delayed": None,
            "oldest_sent_at": None,
            "oldest_age": None,
            "consumers": sorted(consumers.get(name, [])),
            "consumer_count": cluster.broker.queue_consumers(name),
            "in_rate": None,
            "out_rate": None,
        }
        for name in names
    ]
    warnings = _listing_failed(cluster) + [
        f"queue {r['name']!r} has {r['depth']} message(s) but no consumer"
        for r in rows
        if r["depth"] and r["consumer_count"] == 0
    ]
    for text in warnings:
        warn(text)
    if as_json:
        emit_json({"queues": rows, "warnings": warnings, "sampled_seconds": 0.0})
    else:
        emit([{**r, "consumers": r["consumer_count"]} for r in rows], False, columns=QUEUE_COLUMNS)  # (a count)


def _consumers(replies: list[dict[str, Any]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for row in node_rows(replies):
        for item in row["reply"] if isinstance(row["reply"], list) else []:
            if isinstance(item, dict) and item.get("name"):
                found.setdefault(str(item["name"]), []).append(row["name"])
    return found


def _depths(view: Any, names: list[str]) -> dict[str, list[dict[str, int]]]:
    """Each queue's depth per priority bucket."""
    return {name: view.buckets(name) for name in names}


def _oldest_sent(view: Any, names: list[str]) -> dict[str, float]:
    """The smallest sent_at among the messages next in line."""
    return {q.name: q.oldest_sent for q in view.queues(names) if q.oldest_sent is not None}


def _delayed(view: Any, names: list[str]) -> dict[str, int]:
    """Messages parked until their ETA, per queue (the first DELAYED_SCAN of them)."""
    counts: dict[str, int] = {}
    wanted = set(names)
    for row in view.delayed(DELAYED_SCAN)[0]:
        if row["queue"] in wanted:
            counts[row["queue"]] = counts.get(row["queue"], 0) + 1
    return counts


def _received(events: list[dict[str, Any]], consumers: dict[str, list[str]]) -> dict[str, int]:
    """task-received events per queue: the event's queue field (ours), else the one queue its
    worker consumes (Celery's events do not name the queue)."""
    by_node: dict[str, list[str]] = {}
    for queue, nodes in consumers.items():
        for node in nodes:
            by_node.setdefault(node, []).append(queue)
    only = {node: qs[0] for node, qs in by_node.items() if len(qs) == 1}
    counts: dict[str, int] = {}
    for event in events:
        if event.get("type") != "task-received":
            continue
        name = event.get("queue") or only.get(str(event.get("hostname")))
        if name:
            counts[name] = counts.get(name, 0) + 1
    return counts


def _queue_row(
    name: str,
    buckets: list[dict[str, int]],
    before: int,
    delayed: int,
    oldest: float | None,
    consumers: list[str],
    received: int,
    elapsed: float,
    now: float,
) -> dict[str, Any]:
    depth = sum(b["depth"] for b in buckets)
    out_rate = received / elapsed
    return {
        "name": name,
        "depth": depth,
        "buckets": buckets,
        "delayed": delayed,
        "oldest_sent_at": iso(oldest),
        "oldest_age": round(max(now - oldest, 0.0), 3) if oldest is not None and depth else None,
        "consumers": sorted(consumers),
        "consumer_count": len(consumers),
        "in_rate": round(max((depth - before) / elapsed + out_rate, 0.0), 2),
        "out_rate": round(out_rate, 2),
    }
