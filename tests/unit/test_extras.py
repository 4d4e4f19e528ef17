"""The install hints in error messages name what ``pyproject.toml``'s extras install.

Before, every hint said ``pip install 'tqctl[asyncio]'``: tqctl is not on PyPI, so a user who
followed it got an error, or a stranger's package of that name.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from engine.extras import PACKAGES, install_hint

ROOT = Path(__file__).resolve().parents[2]


def _names(extra: str) -> set[str]:
    """The packages the installed tqctl's metadata lists for ``extra`` (from pyproject.toml)."""
    marker = f'extra == "{extra}"'
    found = [req for req in importlib.metadata.requires("tqctl") or [] if marker in req]
    return {re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip().lower() for req in found}


def test_each_hint_names_the_packages_of_its_extra() -> None:
    for extra, packages in PACKAGES.items():
        assert set(packages.split()) == _names(extra), extra
        assert install_hint(extra).endswith(f"pip install -e '.[{extra}]')")


def test_no_message_sends_users_to_pypi_for_tqctl() -> None:
    sources = [*ROOT.glob("engine/**/*.py"), *ROOT.glob("tqctl/**/*.py"), ROOT / "README.md"]
    offenders = [str(p.relative_to(ROOT)) for p in sources if "install 'tqctl[" in p.read_text()]
    assert offenders == []
