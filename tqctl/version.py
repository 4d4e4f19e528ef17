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


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _own_version() -> str:
    """Installed metadata, else the checkout's pyproject.toml (run from source with PYTHONPATH)."""
    try:
        return metadata.version("tqctl")
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        found = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.M) if pyproject.exists() else None
        return f"{found.group(1)} from source" if found else "unknown"


def version_line() -> str:
    parts = ", ".join(f"{name} {_version(name)}" for name in PARTS)
    return f"tqctl {_own_version()} (Python {platform.python_version()}, {parts})"


def print_version(value: bool) -> None:
    """Eager option callback: print and stop before any command or broker is touched."""
    if value:
        emit_line(version_line())
        raise typer.Exit()
