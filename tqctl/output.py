"""The one place that writes to the terminal: records to a table or JSON, errors to stderr.

Commands build plain dicts with stable snake_case keys and hand them here, so ``--json`` output
and the human table always show the same data.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn

# Documented exit codes (README "Exit codes").
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_REPLY = 69  # as `celery status` when no worker answers


def _default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)


def to_json(data: Any) -> str:
    return json.dumps(data, default=_default, sort_keys=False)


def emit_json(data: Any) -> None:
    sys.stdout.write(to_json(data) + "\n")
    sys.stdout.flush()


def emit_line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    """Progress and hints: stderr, so stdout stays clean for pipes."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def error_line(message: str) -> None:
    """One line on stderr, whatever newlines the message carries."""
    first = " ".join(str(message).split())
    sys.stderr.write(f"tqctl: error: {first}\n")
    sys.stderr.flush()


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """One line on stderr and a non-zero exit: never a traceback for an expected problem."""
    import typer  # here, not at the top: the worker process imports this module without typer

    error_line(message)
    raise typer.Exit(code)


def emit_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Iterable[str] | None = None,
    *,
    title: str | None = None,
    empty: str = "(none)",
) -> None:
    from rich.console import Console
    from rich.table import Table

    # In a pipe or a file there is no screen to fit: a wide table (or $COLUMNS) beats cut-off cells.
    wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 240
    console = Console(highlight=False, soft_wrap=False, width=wide)
    if not rows:
        console.print(empty)
        return
    cols = list(columns or rows[0].keys())
    table = Table(title=title, show_lines=False, header_style="bold")
    for col in cols:
        table.add_column(col.replace("_", " "))
    for row in rows:
        table.add_row(*(_cell(row.get(col)) for col in cols))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return to_json(value)
    return str(value)


def emit(data: Any, as_json: bool, *, columns: Iterable[str] | None = None) -> None:
    """Records to stdout: JSON document when asked, else a table (lists) or key: value lines."""
    if as_json:
        emit_json(data)
    elif isinstance(data, list):
        emit_table(data, columns)
    elif isinstance(data, Mapping):
        for key, value in data.items():
            emit_line(f"{key}: {_cell(value)}")
    else:
        emit_line(str(data))
