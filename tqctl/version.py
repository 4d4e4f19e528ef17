"""``tqctl --version``: what an operator pastes into a bug report, on one line."""

from __future__ import annotations

import platform
import re
from importlib import metadata
from pathlib import Path

import typer

from tqctl.output import emit_line

# The libraries whose versions change behaviour on the wire or in the console.
PARTS = ("redis", "kombu", "textual")


def _installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _from_checkout() -> str:
    """Run from source (PYTHONPATH, not installed): the version in the checkout's pyproject.toml."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    found = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.M) if pyproject.exists() else None
    return f"{found.group(1)} from source" if found else "unknown"


def version_line() -> str:
    parts = ", ".join(f"{name} {_installed(name) or 'not installed'}" for name in PARTS)
    return f"tqctl {_installed('tqctl') or _from_checkout()} (Python {platform.python_version()}, {parts})"


def print_version(value: bool) -> None:
    """Eager option callback: print and stop before any command or broker is touched."""
    if value:
        emit_line(version_line())
        raise typer.Exit()
