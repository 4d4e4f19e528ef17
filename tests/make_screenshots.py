"""Render every console scene from the deterministic demo into ``screenshots/`` as PNG.

Run: ``PYTHONPATH=. python tests/make_screenshots.py [scene ...]``. Each scene (the same scenes the
snapshot tests compare, from ``tests/tui/harness.py``) is exported at 80x24 and 120x40 with Textual's
``export_screenshot()`` (SVG) and converted by ``rsvg-convert`` (``apt-get install librsvg2-bin``) to
``screenshots/console-<scene>-<W>x<H>.png``. ``--svg`` keeps the SVGs next to the PNGs.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.tui.harness import SCENES, SIZES, make_demo_app, normalise_svg  # noqa: E402

OUT = ROOT / "screenshots"


async def render(scene: str, size: tuple[int, int]) -> str:
    app = make_demo_app()
    async with app.run_test(size=size, notifications=True) as pilot:
        await SCENES[scene](pilot)
        return normalise_svg(app.export_screenshot(title=f"tqctl · {scene.replace('_', ' ')} · {size[0]}x{size[1]}"))


def to_png(svg: str, png: Path) -> None:
    # rsvg drops a text run's leading no-break spaces (browsers keep them): feed it plain spaces
    # under xml:space="preserve" so the PNG shows the same columns as the terminal.
    text = svg.replace("&#160;", " ").replace("<svg ", '<svg xml:space="preserve" ', 1)
    subprocess.run(["rsvg-convert", "-o", str(png), "/dev/stdin"], input=text.encode(), check=True)


def main(args: list[str]) -> None:
    keep_svg = "--svg" in args
    names = [a for a in args if not a.startswith("--")] or list(SCENES)
    if shutil.which("rsvg-convert") is None:
        sys.exit("make_screenshots: needs rsvg-convert (apt-get install librsvg2-bin)")
    OUT.mkdir(exist_ok=True)
    for scene in names:
        for size in SIZES:
            svg = asyncio.run(render(scene, size))
            png = OUT / f"console-{scene}-{size[0]}x{size[1]}.png"
            to_png(svg, png)
            if keep_svg:
                png.with_suffix(".svg").write_text(svg, encoding="utf-8")
            print(png.relative_to(ROOT))


if __name__ == "__main__":
    main(sys.argv[1:])
