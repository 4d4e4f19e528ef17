"""tqctl run-now ID...: a task waiting for its ETA or countdown goes to its queue now.

The Scheduled screen's "run now", for scripts. A worker that fetches a task whose ETA is still
ahead parks it in the broker's delayed set (Redis); ``run-now`` moves it from there to
its queue in one step, its ``eta`` cleared (re-signed when signing is on); a task that became due
meanwhile is reported, not sent twice. On RabbitMQ and SQS the workers hold ETA tasks in memory,
so there is nothing in the broker to move: one line says so.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from engine.broker.inspect import NotHere
from tqctl.commands.common import AsJson, Broker, BrokerTimeout, session
from tqctl.commands.values import task_id_argument
from tqctl.output import EXIT_ERROR, emit_json, emit_line, note

TaskIds = Annotated[list[str], typer.Argument(callback=task_id_argument, help="Ids of tasks waiting for their ETA.")]


def run_now(task_ids: TaskIds, broker: Broker = "", timeout: BrokerTimeout = 10.0, as_json: AsJson = False) -> None:
    """Send delayed tasks to their queues now, ignoring their ETA. Exit 1 when one could not be moved."""
    moved: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    with session(broker, timeout=timeout) as cluster:
        for task_id in task_ids:
            try:
                moved.append({"id": task_id, "queue": cluster.view.run_now(task_id, cluster.sign)})
            except NotHere as exc:
                errors.append({"id": task_id, "reason": str(exc)})
    if as_json:
        emit_json({"moved": moved, "count": len(moved), "errors": errors})
    else:
        for row in moved:
            emit_line(f"{row['id']} -> {row['queue']}")
    for row in errors:
        note(f"tqctl: {row['reason']}")  # (the reason names the task)
    if errors:
        raise typer.Exit(EXIT_ERROR)
