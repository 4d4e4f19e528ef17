"""Snapshot tests: every console scene from the deterministic demo feed (fixed clock, seeded ids), at
80x24 and 120x40, compared with ``tests/tui/snapshots/`` as plain text (readable diffs) and as SVG
(colours and styles). Regenerate after an intended layout change with::

    TQCTL_UPDATE_SNAPSHOTS=1 PYTHONPATH=. python -m pytest tests/tui/test_snapshots.py

then look at the changed SVGs (any browser) before committing them.
"""

from __future__ import annotations

import asyncio
import difflib
import os
from pathlib import Path

import pytest

from tests.tui.harness import SCENES, SIZES, make_demo_app, normalise_svg, screen_text

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("TQCTL_UPDATE_SNAPSHOTS") == "1"


def render(scene: str, size: tuple[int, int]) -> tuple[str, str]:
    app = make_demo_app()

    async def main() -> tuple[str, str]:
        async with app.run_test(size=size, notifications=True) as pilot:
            await SCENES[scene](pilot)
            return screen_text(app), normalise_svg(app.export_screenshot(title=f"tqctl · {scene}"))

    return asyncio.run(main())


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("scene", list(SCENES))
def test_scene_matches_snapshot(scene: str, size: tuple[int, int]) -> None:
    text, svg = render(scene, size)
    base = SNAPSHOTS / f"{scene}-{size[0]}x{size[1]}"
    if UPDATE or not base.with_suffix(".txt").exists():
        assert UPDATE, f"no snapshot {base.name}: run with TQCTL_UPDATE_SNAPSHOTS=1 to create it"
        SNAPSHOTS.mkdir(exist_ok=True)
        base.with_suffix(".txt").write_text(text, encoding="utf-8")
        base.with_suffix(".svg").write_text(svg, encoding="utf-8")
        return
    expected = base.with_suffix(".txt").read_text(encoding="utf-8")
    diff = "\n".join(difflib.unified_diff(expected.splitlines(), text.splitlines(), "snapshot", "now", lineterm=""))
    assert text == expected, f"{base.name}: the screen's text changed (TQCTL_UPDATE_SNAPSHOTS=1 if intended)\n{diff}"
    assert svg == base.with_suffix(".svg").read_text(encoding="utf-8"), (
        f"{base.name}: same text, different styles or colours (TQCTL_UPDATE_SNAPSHOTS=1 if intended)"
    )


def test_the_demo_renders_the_same_twice() -> None:
    """Determinism: no wall clock, no random ids, no animation reaches the picture."""
    assert render("tasks", (80, 24)) == render("tasks", (80, 24))
