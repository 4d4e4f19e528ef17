"""Few colours or none, in a real terminal (tmux, the recorded demo). ``NO_COLOR``: every state
word stays readable (Textual's greyscale made bold red ``✗ FAILURE`` grey 237 on grey 234, next to
invisible). A 16-colour ``TERM``: ✗ FAILURE is red (it came out magenta, as ⊘ REVOKED)."""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from tqctl.tui.format import STATE_GLYPHS

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")
SGR = re.compile(r"\x1b\[([0-9;]*)m")


def xterm_rgb(index: int) -> tuple[int, int, int]:
    """The RGB of an xterm 256-colour index (the 16 system colours as xterm's defaults)."""
    if index >= 232:
        level = 8 + 10 * (index - 232)
        return level, level, level
    if index >= 16:
        steps = (0, 95, 135, 175, 215, 255)
        index -= 16
        return steps[index // 36], steps[index // 6 % 6], steps[index % 6]
    system = [(0, 0, 0), (205, 0, 0), (0, 205, 0), (205, 205, 0), (0, 0, 238), (205, 0, 205), (0, 205, 205)]
    system += [(229, 229, 229), (127, 127, 127), (255, 0, 0), (0, 255, 0), (255, 255, 0), (92, 92, 255)]
    return [*system, (255, 0, 255), (0, 255, 255), (255, 255, 255)][index]


def brightness(rgb: tuple[int, int, int]) -> float:
    r, g, b = rgb
    return (299 * r + 587 * g + 114 * b) / 255_000


def colours_at(line: str, text: str) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
    """The (foreground, background) a terminal paints ``text`` with on ``line`` (SGR sequences kept)."""
    fg, bg = (229, 229, 229), (0, 0, 0)  # the terminal's own, until a sequence sets one
    plain, pos = "", 0
    for match in SGR.finditer(line + "\x1b[m"):
        plain += line[pos : match.start()]
        if text in plain:
            return fg, bg
        pos = match.end()
        params = [int(p) if p else 0 for p in match.group(1).split(";")]
        i = 0
        while i < len(params):
            p = params[i]
            if p in (38, 48) and params[i + 1 : i + 2] == [5]:
                rgb = xterm_rgb(params[i + 2])
                fg, bg = (rgb, bg) if p == 38 else (fg, rgb)
                i += 3
                continue
            if p in (38, 48) and params[i + 1 : i + 2] == [2]:
                rgb = (params[i + 2], params[i + 3], params[i + 4])
                fg, bg = (rgb, bg) if p == 38 else (fg, rgb)
                i += 5
                continue
            if p == 0:
                fg, bg = (229, 229, 229), (0, 0, 0)
            elif 30 <= p <= 37 or 90 <= p <= 97:
                fg = xterm_rgb(p - 30 if p < 90 else p - 82)
            elif 40 <= p <= 47 or 100 <= p <= 107:
                bg = xterm_rgb(p - 40 if p < 100 else p - 92)
            i += 1
    return None


def state_colours(terminal, rows: slice) -> dict[str, list[tuple[tuple[int, int, int], tuple[int, int, int]]]]:
    """(foreground, background) of each state word in the Tasks screen's ``rows``, for every
    state: ``s`` shows one state at a time."""
    terminal.keys("4")
    terminal.wait(lambda s: "Tasks " in s and "✓ SUCCESS" in s, "the task list")
    seen: dict[str, list[tuple[tuple[int, int, int], tuple[int, int, int]]]] = {}
    for _ in range(len(STATE_GLYPHS) + 1):
        before = terminal.screen().splitlines()[2]
        terminal.keys("s")
        terminal.wait(lambda s, before=before: s.splitlines()[2] != before, "the next state filter")
        lines = terminal.screen(escapes=True).splitlines()
        for state, (glyph, _) in STATE_GLYPHS.items():
            word = f"{glyph} {state}"
            for line in lines[rows]:
                found = colours_at(line, word)
                if found is not None:
                    seen.setdefault(word, []).append(found)
    terminal.keys("C-c")
    terminal.wait(lambda s: s.rstrip().endswith("$"), "the shell prompt")
    return seen


def demo(terminal, env: str) -> None:
    env = f"PYTHONPATH={shlex.quote(str(ROOT))} {env}"
    terminal.keys(f"cd {shlex.quote(str(ROOT))} && env {env} {sys.executable} -m tqctl console --demo", "Enter")
    terminal.wait(lambda s: "DEMO" in s and "8 Audit" in s, "the demo console")


def test_every_state_is_readable_under_no_color(terminal):
    demo(terminal, "NO_COLOR=1")
    seen = state_colours(terminal, slice(2, 23))  # the status line and the rows, the cursor's too
    contrast = {word: min(abs(brightness(fg) - brightness(bg)) for fg, bg in pairs) for word, pairs in seen.items()}
    assert "✗ FAILURE" in contrast and "✓ SUCCESS" in contrast, contrast
    faint = {word: round(c, 2) for word, c in contrast.items() if c < 0.3}
    assert not faint, f"under NO_COLOR these states fade into the background: {faint}"


def test_a_16_colour_terminal_shows_failure_in_red(terminal):
    demo(terminal, "TERM=screen")  # what Rich reads as 16 colours, as TERM=linux, xterm or vt100
    seen = state_colours(terminal, slice(5, 23))  # the rows below the cursor's (it has its own colours)
    failure = {fg for fg, _ in seen["✗ FAILURE"]}
    assert len(failure) == 1, failure
    (red, green, blue) = failure.pop()
    assert red > 2 * green and red > 2 * blue, f"✗ FAILURE is not red but {(red, green, blue)}"
    assert (red, green, blue) not in {fg for fg, _ in seen.get("⊘ REVOKED", [])}
