"""The package as users get it from `pip install .`, `pipx install` or a wheel, not the editable
checkout the other tests import: a file the code reads at run time (the console's stylesheet)
was left out of the wheel, and the console then stopped at start with a traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "tqctl")

pytestmark = pytest.mark.integration


def _tracked(*paths: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", *paths], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built as pip builds one (in an isolated build environment, with the setuptools
    pyproject.toml asks for), from a copy of the tracked files alone: a build in the checkout
    would leave its ``build/`` there, and an untracked file could hide a missing one."""
    src = tmp_path_factory.mktemp("src")
    for name in _tracked(*PACKAGES, "pyproject.toml", "README.md"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=300,  # a hang guard, not a speed check
    )
    [built] = out.glob("tqctl-*.whl")
    return built


def test_the_wheel_holds_every_file_of_the_packages(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    tracked = [n for n in _tracked(*PACKAGES) if not n.endswith(".py")]
    assert "tqctl/tui/tqctl.tcss" in tracked
    assert [n for n in tracked if n not in names] == []
    assert [n for n in _tracked(*PACKAGES) if n.endswith(".py") and n not in names] == []


def test_the_console_opens_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    """Installed on its own (no dependencies: the test environment's are on the path) into a
    folder that is the only place ``engine`` and ``tqctl`` can come from, the console's demo
    opens, draws its first screen and quits on ``q``."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    script = (
        "import asyncio, sys\n"
        f"sys.path.insert(0, {str(target)!r})\n"
        "import tqctl\n"
        f"assert tqctl.__file__.startswith({str(target)!r}), tqctl.__file__\n"
        "from tqctl.tui.app import TqctlApp\n"
        "from tqctl.tui.audit import AuditLog\n"
        "from tqctl.tui.demo import AUDIT, DemoSource, demo_clock\n"
        "async def main():\n"
        "    app = TqctlApp(DemoSource(), audit=AuditLog(None, list(AUDIT)), clock=demo_clock)\n"
        "    async with app.run_test(size=(80, 24)) as pilot:\n"
        "        await pilot.pause()\n"
        "        print('screen', type(app.screen).__name__)\n"
        "        await pilot.press('q')\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("screen ") and "Error" not in proc.stderr
