"""Typer entry points for the console: ``tqctl`` (no command), ``tqctl console`` and ``tqctl up``.

Kept light: nothing here imports Textual, so ``tqctl --help`` and the scripted commands stay fast.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from tqctl.commands.values import app_option, given_on_command_line, required_app_option, url_option
from tqctl.output import EXIT_USAGE, fail, note
from tqctl.version import print_version

Broker = Annotated[
    str,
    typer.Option(
        "--broker",
        envvar="TQCTL_BROKER",
        callback=url_option,
        help="Broker URL (redis://…); default: the bundled broker in the state folder.",
    ),
]
ReadOnly = Annotated[bool, typer.Option("--read-only", help="Hide and refuse every action that changes the cluster.")]
StateDir = Annotated[
    str, typer.Option("--state-dir", envvar="TQCTL_STATE_DIR", help="State folder (bundled broker, audit.jsonl, logs).")
]
AppSpec = Annotated[
    str,
    typer.Option("-A", "--app", callback=app_option, help="module or module:attr holding the App (beat entries)."),
]
Demo = Annotated[bool, typer.Option("--demo", help="Open on a recorded demo cluster (nothing is contacted).")]
Version = Annotated[
    bool,
    typer.Option(
        "--version",
        "-V",
        is_eager=True,
        callback=print_version,
        help="Print tqctl's version (and its key libraries') and exit.",
    ),
]


def _run(**options: object) -> None:
    from tqctl.tui.launch import LaunchError, open_console

    try:
        open_console(**options)  # type: ignore[arg-type]
    except LaunchError as exc:
        fail(str(exc))


def root(
    ctx: typer.Context,
    broker: Broker = "",
    read_only: ReadOnly = False,
    state_dir: StateDir = ".tqctl",
    app_spec: AppSpec = "",
    demo: Demo = False,
    version: Version = False,
) -> None:
    """Run and watch a Celery-compatible task queue. With no command: open the console."""
    if ctx.invoked_subcommand is not None and given_on_command_line(ctx, "state_dir"):
        # Most subcommands have no --state-dir of their own and read TQCTL_STATE_DIR when they
        # start the bundled broker: the global flag is handed down as that variable (a
        # subcommand's own --state-dir, parsed after this, still wins).
        os.environ["TQCTL_STATE_DIR"] = state_dir
    if ctx.invoked_subcommand is None:
        _run(broker=broker or None, state_dir=state_dir, read_only=read_only, app_spec=app_spec or None, demo=demo)


def console(
    broker: Broker = "",
    read_only: ReadOnly = False,
    state_dir: StateDir = ".tqctl",
    app_spec: AppSpec = "",
    demo: Demo = False,
) -> None:
    """Open the console on a cluster: ours or a Celery 5 fleet, from a broker URL alone.

    Keys: 1-8 or :name switch screens, / filters, ? lists the keys, ctrl+p palette, ctrl+c quits.
    """
    _run(broker=broker or None, state_dir=state_dir, read_only=read_only, app_spec=app_spec or None, demo=demo)


def up(
    app_spec: Annotated[
        str, typer.Option("-A", "--app", callback=required_app_option, help="module or module:attr holding the App")
    ] = "",
    concurrency: Annotated[int, typer.Option("-c", "--concurrency", help="pool size per worker")] = 0,
    workers: Annotated[int, typer.Option("--workers", min=0, max=64, help="how many workers")] = 1,
    beat: Annotated[bool, typer.Option("--beat", help="also run beat (periodic tasks)")] = False,
    detach: Annotated[bool, typer.Option("--detach", help="no console: print their pids, leave them running")] = False,
    pool: Annotated[str, typer.Option("-P", "--pool", help="prefork | threads | solo")] = "prefork",
    queues: Annotated[str, typer.Option("-Q", "--queues", help="comma-separated queues")] = "",
    broker: Broker = "",
    read_only: ReadOnly = False,
    state_dir: StateDir = ".tqctl",
) -> None:
    """Start the broker, workers (and beat) as child processes and open the console on them.

    Leaving the console asks whether to stop them (warm shutdown).
    --detach opens no console: it prints their pids and leaves them running
    (for scripts: plain up needs a terminal).
    Their logs go to STATE_DIR/logs/.
    """
    from tqctl.tui.launch import LaunchError
    from tqctl.tui.launch import up as start

    if pool not in ("prefork", "threads", "solo"):
        fail(f"unknown pool {pool!r}: use prefork, threads or solo", EXIT_USAGE)
    try:
        start(
            app_spec=app_spec,
            concurrency=concurrency,
            workers=workers,
            beat=beat,
            detach=detach,
            pool=pool,
            queues=queues,
            broker=broker or None,
            state_dir=state_dir,
            read_only=read_only,
            say=note,
        )
    except LaunchError as exc:
        fail(str(exc))
