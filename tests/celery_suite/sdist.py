"""Fetch Celery 5.7.0's sdist and lay out its integration suite twice, one tree per client.

``celery/``: the files as shipped, except that the session worker fixture is ours (a worker
process the runner started, instead of one inside the test process). ``engine/``: the same, with
every ``celery`` import line pointed at our side (``compat`` and ``engine_fixtures``). Only import
lines change; the tests' bodies are Celery's.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

VERSION = "5.7.0"
HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = HERE / ".cache"
KEEP = ("t/__init__.py", "t/canvas_helpers.py", "t/integration/")

_FROM = re.compile(r"^(?P<indent>\s*)from (?P<module>celery(?:\.[\w.]+)?) import (?P<names>.+)$")
_IMPORT = re.compile(r"^(?P<indent>\s*)import celery$")
_SESSION = "from celery.contrib.pytest import celery_app, celery_session_app, celery_session_worker"
# Modules whose names come from our fixtures rather than from the engine.
_FIXTURE_MODULES = {"celery.contrib.pytest", "celery.contrib.testing.manager"}


@dataclass(frozen=True)
class Trees:
    celery: Path
    engine: Path


def cache_dir() -> Path:
    return Path(os.environ.get("CELERY_SUITE_CACHE") or DEFAULT_CACHE)


def fetch(cache: Path) -> Path:
    """The sdist, downloaded once with pip from the package index."""
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"celery-{VERSION}.tar.gz"
    if not archive.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-binary",
                ":all:",
                "--no-deps",
                f"celery=={VERSION}",
                "-d",
                str(cache),
            ],
            check=True,
        )
    return archive


def rewrite_for_engine(line: str) -> str:
    """One source line with its ``celery`` import pointed at our side; other lines unchanged."""
    if m := _IMPORT.match(line):
        return f"{m['indent']}import tests.celery_suite.compat as celery"
    if m := _FROM.match(line):
        target = (
            "tests.celery_suite.engine_fixtures" if m["module"] in _FIXTURE_MODULES else "tests.celery_suite.compat"
        )
        return f"{m['indent']}from {target} import {m['names']}"
    return line


def rewrite_for_celery(line: str) -> str:
    """Celery's client as is; only the session worker becomes the runner's external process."""
    if line.strip() == _SESSION:
        return (
            "from celery.contrib.pytest import celery_app, celery_session_app\n"
            "from tests.celery_suite.external import celery_session_worker"
        )
    return line


def _extract(archive: Path, dest: Path) -> None:
    prefix = f"celery-{VERSION}/"
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            rel = member.name[len(prefix) :] if member.name.startswith(prefix) else ""
            if member.isfile() and rel.startswith(KEEP):
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src:  # type: ignore[union-attr]
                    target.write_bytes(src.read())


def _rewrite_tree(root: Path, rewrite: object) -> None:
    for path in root.rglob("*.py"):
        lines = path.read_text().split("\n")
        path.write_text("\n".join(rewrite(line) for line in lines))  # type: ignore[operator]


# Celery's own pytest settings (its pyproject.toml), which the suite's class names depend on.
PYTEST_INI = """[pytest]
python_classes = test_*
xfail_strict = true
timeout = 60
markers =
    flaky
    timeout
"""


def prepare(cache: Path | None = None) -> Trees:
    """Both trees, built once per version of these rules (a stamp of this file's source), and
    swapped in whole so a run already using them never sees a half-built tree."""
    cache = cache or cache_dir()
    archive = fetch(cache)
    stamp = hashlib.sha256(Path(__file__).read_bytes() + archive.name.encode()).hexdigest()[:16]
    trees = Trees(cache / "celery", cache / "engine")
    for root, rewrite in ((trees.celery, rewrite_for_celery), (trees.engine, rewrite_for_engine)):
        if (root / ".stamp").exists() and (root / ".stamp").read_text() == stamp:
            continue
        building = root.with_name(f"{root.name}.build-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        _extract(archive, building)
        _rewrite_tree(building, rewrite)
        (building / "pytest.ini").write_text(PYTEST_INI)
        (building / ".stamp").write_text(stamp)
        old = root.with_name(f"{root.name}.old-{os.getpid()}")
        if root.exists():
            root.rename(old)
        building.rename(root)
        shutil.rmtree(old, ignore_errors=True)
    return trees
