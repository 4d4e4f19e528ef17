"""``tqctl dead``: the messages the engine could not run, kept with their reason."""

from __future__ import annotations

import datetime as dt

import typer

from engine.exceptions import BrokerUnavailable, ImproperlyConfigured
from tqctl.client import open_broker
from tqctl.commands.common import confirm
from tqctl.commands.values import not_empty, url_option
from tqctl.output import EXIT_ERROR, EXIT_USAGE, emit, emit_json, fail, note

app = typer.Typer(help="List, requeue or delete dead letters (messages that could not run).", no_args_is_help=True)

BrokerOpt = typer.Option("", "--broker", envvar="TQCTL_BROKER", callback=url_option, help="broker URL")
JsonOpt = typer.Option(False, "--json", help="machine-readable output")
IdsArg = typer.Argument(None, callback=not_empty("dead-letter id"))
ROUND_TRIP = 5.0  # seconds each SQS call may take (as Redis's and RabbitMQ's fixed bounds)


def _broker(url: str):  # noqa: ANN202 - the engine's Broker protocol
    try:
        return open_broker(url or None, call_timeout=ROUND_TRIP)
    except (BrokerUnavailable, ImproperlyConfigured) as exc:
        fail(str(exc))


def _row(letter) -> dict:  # noqa: ANN001
    data = letter.as_dict()
    data["time"] = dt.datetime.fromtimestamp(letter.time, dt.timezone.utc).isoformat()
    return data


@app.command("ls")
def ls(
    limit: int = typer.Option(100, "--limit", min=0, max=1_000_000), broker: str = BrokerOpt, as_json: bool = JsonOpt
) -> None:
    """List dead letters, newest first."""
    rows = [_row(letter) for letter in _broker(broker).dead_letters(limit)]
    emit(rows, as_json, columns=["id", "time", "queue", "reason", "task_name", "task_id", "detail"])


@app.command("show")
def show(
    letter_id: str = typer.Argument(..., callback=not_empty("dead-letter id")),
    broker: str = BrokerOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show one dead letter with its raw message."""
    letter = _broker(broker).dead_letter_get(letter_id)
    if letter is None:
        fail(f"no dead letter {letter_id!r}")
    data = _row(letter)
    data["raw"] = letter.raw.decode("utf-8", "replace")
    emit(data, as_json)


def _act(verb: str, ids: list[str], all_: bool, yes: bool, dry_run: bool, broker: str, as_json: bool) -> None:
    if not ids and not all_:  # a usage error, found before connecting
        fail(f"name dead-letter ids or pass --all (try 'tqctl dead {verb} -h')", EXIT_USAGE)
    b = _broker(broker)
    targets = [d.id for d in b.dead_letters(1_000_000)] if all_ else list(ids)
    if not targets:  # --all on an empty list: nothing to do is not a failure (a cron job runs this)
        if as_json:
            emit_json({"action": verb, "ids": [], "count": 0, "missing": []} | ({"dry_run": True} if dry_run else {}))
        note(f"tqctl: nothing to {verb}: no dead letters")
        return
    if dry_run:  # the real run's plan: only letters that exist, the rest reported missing
        found = [i for i in targets if b.dead_letter_get(i) is not None]
        missing = [i for i in targets if i not in found]
        emit({"action": verb, "dry_run": True, "ids": found, "count": len(found), "missing": missing}, as_json)
        if missing:
            raise typer.Exit(EXIT_ERROR)
        return
    confirm(f"{verb} {len(targets)} dead letter(s)?", yes, hint="")
    call = b.dead_letter_requeue if verb == "requeue" else b.dead_letter_delete
    done = [i for i in targets if call(i)]
    missing = [i for i in targets if i not in done]
    if as_json:
        emit_json({"action": verb, "ids": done, "count": len(done), "missing": missing})
    else:
        note(f"{verb}d {len(done)} dead letter(s)" + (f"; not found: {', '.join(missing)}" if missing else ""))
    if missing:
        raise typer.Exit(EXIT_ERROR)


@app.command("requeue")
def requeue(
    ids: list[str] = IdsArg,
    all_: bool = typer.Option(False, "--all"),
    yes: bool = typer.Option(False, "--yes", "-y"),
    dry_run: bool = typer.Option(False, "--dry-run"),
    broker: str = BrokerOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Put dead letters back on the queue they came from."""
    _act("requeue", ids or [], all_, yes, dry_run, broker, as_json)


@app.command("delete")
def delete(
    ids: list[str] = IdsArg,
    all_: bool = typer.Option(False, "--all"),
    yes: bool = typer.Option(False, "--yes", "-y"),
    dry_run: bool = typer.Option(False, "--dry-run"),
    broker: str = BrokerOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Delete dead letters for good."""
    _act("delete", ids or [], all_, yes, dry_run, broker, as_json)
