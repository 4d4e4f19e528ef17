"""tqctl purge QUEUE: delete every waiting message of one queue (all priority buckets).

Messages a worker already holds (in flight) and messages parked until their ETA are not touched.
On AMQP it is RabbitMQ's queue.purge (ready messages only; the JSON has no priority buckets).
Without --yes the queue name must be typed back; --dry-run shows the counts and changes nothing.
"""

from __future__ import annotations

import typer

from tqctl.commands.common import AsJson, Broker, BrokerTimeout, Cluster, DryRun, Yes, confirm_typed, session
from tqctl.commands.values import name_argument
from tqctl.output import emit_json, emit_line, note


def purge(
    queue: str = typer.Argument(..., callback=name_argument("queue name"), help="Queue name, e.g. celery."),
    broker: Broker = "",
    timeout: BrokerTimeout = 10.0,
    yes: Yes = False,
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Delete all waiting messages in QUEUE. Asks you to type the queue name unless --yes."""
    with session(broker, timeout=timeout) as cluster:
        buckets = _buckets(cluster, queue)
        depth = sum(b["depth"] for b in buckets) if buckets else cluster.broker.queue_depth(queue)
        doc = {"queue": queue, "buckets": buckets, "count": depth}
        if dry_run:
            if as_json:
                emit_json({**doc, "dry_run": True})
            else:
                per = ", ".join(f"priority {b['priority']}: {b['depth']}" for b in buckets)
                emit_line(f"dry run: would purge {depth} message(s) from {queue!r}" + (f" ({per})" if per else ""))
            return
        if depth:
            confirm_typed(queue, f"Purge {depth} message(s) from queue {queue!r}?", yes)
            depth = cluster.broker.purge(queue)
    if as_json:
        emit_json({"queue": queue, "purged": depth})
    else:
        note(f"purged {depth} message(s) from {queue!r}")


def _buckets(cluster: Cluster, queue: str) -> list[dict[str, int]]:
    """Depth per priority list on Redis; [] on AMQP, where one queue holds every priority."""
    return list(cluster.view.buckets(queue))
