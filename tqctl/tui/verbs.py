"""One builder per operator action: exact scope text, the equivalent command and the adapter call.

Screens gather the facts (which workers, how many tasks, what waits in a queue) from the model
and call these; nothing here touches the network until ``Action.run`` executes in a worker.
"""

from __future__ import annotations

from typing import Any

from tqctl.tui.actions import Action, ActionContext, cli, summarize_replies
from tqctl.tui.adapter import ActionError, no_stored_message
from tqctl.tui.messages import Outcome


def _names(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}{'es' if word.endswith('s') else 's'}"


def _dest(workers: list[str]) -> list[str]:
    return ["-d", ",".join(workers)]


def _control(method: str, workers: list[str], **arguments: Any):  # noqa: ANN202
    def run(adapter: Any, _: ActionContext) -> Outcome:
        replies = adapter.command(method, workers, **arguments)
        ok, summary = summarize_replies(replies, workers)
        return Outcome(ok, summary, replies)

    return run


# -- workers -----------------------------------------------------------------------------------------
def pool_resize(
    workers: list[str], n: int, grow: bool, broker: str | None, sizes: dict[str, int | None] | None = None
) -> Action:
    """Growing is sent at once; shrinking asks first, naming each pool's size before and after: on the
    Workers screen ``-`` also means "previous screen" everywhere else, and a reflex must not shrink."""
    verb = "pool_grow" if grow else "pool_shrink"
    what = "Grow" if grow else "Shrink"
    scope = [f"{'add' if grow else 'remove'} {_plural(n, 'process')} on {_names(workers)}"]
    if not grow:
        scope = [_resize_line(w, (sizes or {}).get(w), -n) for w in workers[:6]]
        if len(workers) > 6:
            scope.append(f"and {len(workers) - 6} more workers")
    return Action(
        verb,
        f"{what} the pool of {_plural(len(workers), 'worker')} by {n}",
        ",".join(workers),
        tuple(scope),
        cli("control", verb.replace("_", "-"), n, *_dest(workers), broker=broker),
        _control(verb, workers, n=n),
        confirm=not grow,
        enter_confirms=True,
        button=what,
    )


def _resize_line(worker: str, size: int | None, change: int) -> str:
    if size is None:
        return f"{worker}: {change:+d} process (its pool size is not known yet)"
    return f"{worker}: from {_plural(size, 'process')} to {max(size + change, 0)}"


def autoscale(workers: list[str], high: int, low: int, broker: str | None) -> Action:
    return Action(
        "autoscale",
        f"Autoscale {_names(workers)}",
        ",".join(workers),
        (f"pool between {low} and {high} processes on {_names(workers)}",),
        cli("control", "autoscale", high, low, *_dest(workers), broker=broker),
        _control("autoscale", workers, max=high, min=low),
    )


def add_consumer(workers: list[str], queue: str, broker: str | None) -> Action:
    return Action(
        "add_consumer",
        f"Consume {queue!r} on {_plural(len(workers), 'worker')}",
        ",".join(workers),
        (f"{_names(workers)} start taking messages from {queue!r}",),
        cli("control", "add-consumer", queue, *_dest(workers), broker=broker),
        _control("add_consumer", workers, queue=queue),
    )


def cancel_consumer(workers: list[str], queue: str, depth: int, left: list[str], broker: str | None) -> Action:
    scope = [f"{_names(workers)} stop taking messages from {queue!r} ({_plural(depth, 'message')} waiting)"]
    scope.append(f"consumers left on {queue!r}: {_names(left)}" if left else f"⚠ nothing will consume {queue!r}")
    return Action(
        "cancel_consumer",
        f"Stop consuming {queue!r}",
        ",".join(workers),
        tuple(scope),
        cli("control", "cancel-consumer", queue, *_dest(workers), broker=broker),
        _control("cancel_consumer", workers, queue=queue),
        destructive=True,
        button="Stop consuming",
    )


def drain(
    workers: list[str], active: int, reserved: int, orphaned: list[str], broker: str | None, timeout: float = 60.0
) -> Action:
    scope = [
        f"{_names(workers)} stop fetching, finish {active} active and {reserved} reserved tasks, then shut down"
        f" (timeout {timeout:.0f}s)"
    ]
    if orphaned:
        scope.append(f"⚠ afterwards nothing consumes: {_names(orphaned)}")
    return Action(
        "drain",
        f"Drain {_plural(len(workers), 'worker')}",
        ",".join(workers),
        tuple(scope),
        cli("control", "drain", int(timeout), *_dest(workers), "--yes", broker=broker),
        _control("drain", workers, timeout=timeout),
        destructive=True,
        button="Drain",
    )


def shutdown(workers: list[str], active: int, orphaned: list[str], broker: str | None) -> Action:
    scope = [f"warm shutdown of {_names(workers)}: {active} running tasks finish first, reserved ones go back"]
    if orphaned:
        scope.append(f"⚠ afterwards nothing consumes: {_names(orphaned)}")

    def run(adapter: Any, _: ActionContext) -> Outcome:
        replies = adapter.shutdown(workers)
        return Outcome(True, f"shutdown sent to {_names(workers)}", replies)

    return Action(
        "shutdown",
        f"Shut down {_plural(len(workers), 'worker')}",
        ",".join(workers),
        tuple(scope),
        cli("control", "shutdown", *_dest(workers), "--yes", broker=broker),
        run,
        destructive=True,
        button="Shut down",
    )


def enable_events(workers: list[str], broker: str | None) -> Action:
    return Action(
        "enable_events",
        f"Enable task events on {_plural(len(workers), 'worker')}",
        ",".join(workers),
        (f"{_names(workers)} start sending task events (as celery control enable_events)",),
        cli("control", "enable-events", *_dest(workers), broker=broker),
        _control("enable_events", workers),
    )


# -- tasks -------------------------------------------------------------------------------------------
def revoke(
    ids: list[str],
    describe: str,
    workers: list[str],
    broker: str | None,
    terminate: bool = False,
    signal: str = "SIGTERM",
) -> Action:
    verb = "terminate" if terminate else "revoke"
    scope = [f"{verb} {_plural(len(ids), 'task')}: {describe}"]
    scope.append(
        f"running on {_names(workers)}: killed with {signal}"
        if terminate and workers
        else "tasks not started yet will be discarded by every worker (kept 3h in the broker)"
    )
    parts = ["revoke", *ids]
    if terminate:
        parts += ["--terminate", "--signal", signal]
    parts.append("--yes")  # the console asked already; a script must not stop at the question

    def run(adapter: Any, _context: ActionContext) -> Outcome:
        replies = adapter.revoke(ids, terminate=terminate, signal=signal)
        _, summary = summarize_replies(replies)
        return Outcome(True, f"{verb}d {_plural(len(ids), 'task')} · {summary}", replies)

    return Action(
        verb,
        f"{verb.capitalize()} {_plural(len(ids), 'task')}",
        ",".join(ids),
        tuple(scope),
        cli(*parts, broker=broker),
        run,
        destructive=True,
        button=verb.capitalize(),
    )


def stored_name(adapter: Any, task_id: str) -> str | None:
    """The task name in ``task_id``'s stored message (None when none is stored). Reads the broker:
    call it from a thread worker."""
    stored = adapter.stored_arguments(task_id)
    name = stored.get("name") if stored else None
    return name if isinstance(name, str) and name else None


def retry(task_id: str, name: str | None, broker: str | None) -> Action:
    """Republish the stored message as sent. ``name`` is the live view's, None when the console missed
    the task's task-received (it carries the name; started/failed do not) and has not learnt it since:
    the name is then the stored message's, read before sending, and without one nothing is sent."""

    def run(adapter: Any, _: ActionContext) -> Outcome:
        said = name or stored_name(adapter, task_id)
        if not said:
            raise ActionError(no_stored_message(task_id))
        new_id = adapter.retry(task_id)
        return Outcome(True, f"{said} sent again as {new_id}", {"new_id": new_id, "name": said})

    return Action(
        "retry",
        f"Retry {name or task_id}",
        task_id,
        (f"republish the original message of {task_id}",),
        cli("retry", task_id, broker=broker),
        run,
    )


def retry_many(ids: list[str], describe: str, broker: str | None) -> Action:
    """The marked rows' retry: several messages at once, so it asks first (a single one does not)."""

    def run(adapter: Any, _: ActionContext) -> Outcome:
        sent: dict[str, str] = {}
        errors: dict[str, str] = {}
        for task_id in ids:
            try:
                sent[task_id] = adapter.retry(task_id)
            except ActionError as exc:  # one without a stored message does not stop the others
                errors[task_id] = str(exc)
        summary = f"retried {len(sent)}/{_plural(len(ids), 'task')}"
        if errors:
            summary += f" · {len(errors)} not sent: {next(iter(errors.values()))}"
        return Outcome(not errors, summary, {"retried": sent, "errors": errors})

    return Action(
        "retry",
        f"Retry {_plural(len(ids), 'task')}",
        ",".join(ids),
        (
            f"republish the original messages of {_plural(len(ids), 'task')}: {describe}",
            "each runs again under a new id, linked to the old one (retry_of)",
        ),
        cli("retry", *ids, broker=broker),
        run,
        confirm=True,
        button="Retry",
    )


def retry_edited(
    task_id: str, name: str, args: list[Any], kwargs: dict[str, Any], queue: str | None, broker: str | None
) -> Action:
    import json

    shown = f"{name}(*{json.dumps(args)[:120]}, **{json.dumps(kwargs)[:120]})"

    def run(adapter: Any, _: ActionContext) -> Outcome:
        new_id = adapter.retry_with(task_id, name, args, kwargs, queue)
        return Outcome(True, f"{name} sent with edited arguments as {new_id}", {"new_id": new_id})

    return Action(
        "retry_edited",
        f"Retry {name} with edited arguments",
        task_id,
        (shown, f"to queue {queue or 'celery'}, linked to {task_id} (retry_of)"),
        cli(
            "call",
            name,
            "--args",
            json.dumps(args),
            "--kwargs",
            json.dumps(kwargs),
            "-Q",
            queue or "celery",
            broker=broker,
        ),
        run,
        confirm=True,
        button="Send",
    )


# -- failure inbox -----------------------------------------------------------------------------------
def retry_group(
    fp: str,
    label: str,
    ids: list[str],
    skipped: int,
    per_second: float,
    broker: str | None,
) -> Action:
    seconds = len(ids) / per_second if per_second > 0 else 0
    took = "under a second" if seconds < 1 else f"about {seconds:.0f}s"
    scope = [f"republish {_plural(len(ids), 'stored failure')} of {label} at {per_second:g}/s ({took})"]
    if skipped:
        scope.append(f"{skipped} seen only as events have no stored message and are skipped")

    def run(adapter: Any, ctx: ActionContext) -> Outcome:
        result = adapter.retry_group(ids, per_second, ctx.progress, ctx.cancelled)
        n = len(result["retried"])
        return Outcome(
            not result["errors"],
            f"retried {n}/{len(ids)} of {label}" + (f" · {len(result['errors'])} gone" if result["errors"] else ""),
            result,
        )

    return Action(
        "retry_group",
        f"Retry {_plural(len(ids), 'failure')}",
        fp,
        tuple(scope),
        cli(
            "retry",
            "--failed",
            "--group",
            fp,
            "--rate",
            f"{per_second:g}/s",
            "--yes",
            broker=broker,
        ),
        run,
        confirm=True,
        button="Retry all",
    )


def delete_failures(ids: list[str], label: str, fp: str | None, broker: str | None) -> Action:
    def run(adapter: Any, _: ActionContext) -> Outcome:
        result = adapter.delete_failures(ids, fp)
        return Outcome(True, f"deleted {result['deleted']}/{len(ids)} from the inbox", result)

    return Action(
        "delete_failures",
        f"Delete {_plural(len(ids), 'failure')}",
        fp or ",".join(ids),
        (f"remove {_plural(len(ids), 'failure')} of {label} from the inbox; their stored messages are lost",),
        cli("discard", *(["--failed", "--group", fp] if fp else ids), "--yes", broker=broker),
        run,
        destructive=True,
        button="Delete",
    )


# -- queues, delayed, dead letters, beat -------------------------------------------------------------
def purge(queue: str, depth: int, consumers: list[str], broker: str | None) -> Action:
    def run(adapter: Any, _: ActionContext) -> Outcome:
        result = adapter.purge(queue)
        return Outcome(True, f"purged {result['purged']} messages from {queue!r}", result)

    scope = (
        f"delete every waiting message in {queue!r}: {_plural(depth, 'message')} now (more may arrive)",
        f"consumers: {_names(consumers) if consumers else 'none'}; running tasks are not affected",
    )
    return Action(
        "purge",
        f"Purge {queue!r}",
        queue,
        scope,
        cli("purge", queue, "--yes", broker=broker),
        run,
        destructive=True,
        typed=queue,
        button="Purge",
    )


def run_eta_now(task_id: str, name: str | None, broker: str | None) -> Action:
    def run(adapter: Any, _: ActionContext) -> Outcome:
        result = adapter.run_eta_now(task_id)
        return Outcome(True, f"{name or task_id} moved to {result['queue']!r} now", result)

    return Action(
        "eta_run_now",
        f"Run {name or task_id} now",
        task_id,
        (f"move {task_id} from the delayed set to its queue, ignoring its ETA",),
        cli("run-now", task_id, broker=broker),
        run,
    )


def beat_run_now(entry: str, app_spec: str | None, broker: str | None) -> Action:
    def run(adapter: Any, _: ActionContext) -> Outcome:
        result = adapter.beat_run_now(entry)
        return Outcome(True, f"{entry} sent as {result['task_id']}", result)

    return Action(
        "beat_run_now",
        f"Run beat entry {entry!r} now",
        entry,
        (f"send one run of {entry!r} now; its schedule is unchanged",),
        cli("beat", "run", entry, "-A", app_spec or "APP", broker=broker),
        run,
    )


def beat_enable(entry: str, enabled: bool, app_spec: str | None, broker: str | None) -> Action:
    word = "enable" if enabled else "disable"

    def run(adapter: Any, _: ActionContext) -> Outcome:
        result = adapter.beat_set_enabled(entry, enabled)
        return Outcome(True, f"{entry} {word}d", result)

    scope = (
        "fires next at its first slot from now; missed slots are not sent"
        if enabled
        else "its slots are skipped (not queued up) until enabled again",
    )
    return Action(
        f"beat_{word}",
        f"{word.capitalize()} beat entry {entry!r}",
        entry,
        scope,
        cli("beat", word, entry, "-A", app_spec or "APP", broker=broker),
        run,
    )


def dead_letters(ids: list[str], requeue: bool, describe: str, broker: str | None) -> Action:
    word = "requeue" if requeue else "delete"

    def run(adapter: Any, _: ActionContext) -> Outcome:
        result = adapter.dead_requeue(ids) if requeue else adapter.dead_delete(ids)
        done = result["requeued" if requeue else "deleted"]
        return Outcome(len(done) == len(ids), f"{word}d {len(done)}/{len(ids)} dead letters", result)

    scope = (
        f"{'put back on their queues' if requeue else 'delete for good'}: {_plural(len(ids), 'dead letter')}"
        f" ({describe})",
    )
    return Action(
        f"dead_{word}",
        f"{word.capitalize()} {_plural(len(ids), 'dead letter')}",
        ",".join(ids),
        scope,
        cli("dead", word, *ids, "--yes", broker=broker),
        run,
        destructive=not requeue,
        confirm=True,
        button=word.capitalize(),
    )
