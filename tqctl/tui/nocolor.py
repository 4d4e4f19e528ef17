"""Terminals with few colours or none: every state stays readable and tells itself apart.

A 16-colour terminal (``TERM=linux``, ``screen``, ``xterm``, ``vt100``): the theme's red, brought
down to 16 colours, came out magenta, so ✗ FAILURE looked like ⊘ REVOKED. ``few_colours`` tells
the launcher to keep the terminal's own ANSI colours there.

``NO_COLOR``: the console in greys, with every text readable against its background.

Textual turns each colour into the grey of the same luminance. Red is dark, so ``✗ FAILURE``
(bold red) came out grey 237 on grey 234: the one state an operator looks for was the one that
could not be read. This filter keeps Textual's greys (the cursor row, the header's reverse tabs)
and lifts any text too close to its background to the ordinary text grey.
"""

from __future__ import annotations

import os
from functools import lru_cache

from rich.segment import Segment
from rich.style import Style
from textual.color import Color
from textual.filter import LineFilter, monochrome_style

MIN_CONTRAST = 0.3  # difference in brightness (0-1) below which text is lifted
LIGHT_TEXT = Color(224, 224, 224)
DARK_TEXT = Color(24, 24, 24)


@lru_cache(1024)
def readable_grey(style: Style) -> Style:
    """``style`` in greys; its text in the plain text grey when it would fade into the background."""
    grey = monochrome_style(style)
    if grey.color is None or grey.bgcolor is None:
        return grey
    text, back = Color.from_rich_color(grey.color), Color.from_rich_color(grey.bgcolor)
    if abs(text.brightness - back.brightness) >= MIN_CONTRAST:
        return grey
    lifted = LIGHT_TEXT if back.brightness < 0.5 else DARK_TEXT
    return grey + Style(color=lifted.rich_color)


class ReadableMonochrome(LineFilter):
    """Textual's ``Monochrome`` filter, with ``readable_grey`` instead of plain greyscale."""

    def apply(self, segments: list[Segment], background: Color) -> list[Segment]:
        return [Segment(text, None if style is None else readable_grey(style), None) for text, style, _ in segments]


def few_colours() -> bool:
    """Whether the terminal shows 8 or 16 colours (as Rich reads ``TERM`` and ``COLORTERM``).
    Not under NO_COLOR: its grey filter starts from the theme's colours."""
    if "NO_COLOR" in os.environ:
        return False
    from rich.console import Console

    return Console(force_terminal=True).color_system in ("standard", "windows")
