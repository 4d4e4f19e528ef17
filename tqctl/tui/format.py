"""Text helpers shared by every screen: state glyphs and words, ages, durations, counts.

Colour never carries meaning alone: every state is a glyph *and* a word, so the console reads the
same under ``NO_COLOR``, on a monochrome terminal or to a colour-blind operator.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from rich.text import Text

STATE_GLYPHS = {
    "PENDING": ("·", "dim"),
    "RECEIVED": ("○", ""),
    "STARTED": ("▶", "bold cyan"),
    "SUCCESS": ("✓", "green"),
    "FAILURE": ("✗", "bold red"),
    "RETRY": ("↻", "yellow"),
    "REVOKED": ("⊘", "magenta"),
    "REJECTED": ("⤺", "yellow"),
}
STATES = tuple(STATE_GLYPHS)
WARN = "⚠"


def state_text(state: str | None, short: bool = False) -> Text:
    """``✓ SUCCESS`` with the state's style; unknown states get ``?``."""
    word = state or "UNKNOWN"
    glyph, style = STATE_GLYPHS.get(word, ("?", ""))
    label = word[:4] if short else word
    return Text(f"{glyph} {label}", style=style)


def state_plain(state: str | None) -> str:
    word = state or "UNKNOWN"
    return f"{STATE_GLYPHS.get(word, ('?', ''))[0]} {word}"


def age(seconds: float | None) -> str:
    """Compact age: ``4s``, ``12m``, ``3h``, ``2d``; ``-`` when unknown."""
    if seconds is None or math.isnan(seconds):
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h"
    return f"{seconds // 86400:.0f}d"


def since(now: float, then: float | None) -> str:
    return "-" if then is None else age(now - then)


def until(now: float, then: float | None) -> str:
    if then is None:
        return "-"
    delta = then - now
    return f"in {age(delta)}" if delta >= 0 else f"{age(-delta)} late"


def until_as_read(now: float, then: float | None, read_at: float | None) -> str:
    """``until`` for a time read from the cluster at ``read_at``: one that has passed since that
    read is "due" (it has most likely happened; the next read tells), not late. A beat entry every
    2 s read every 5 s would otherwise show "3s late" while beat fires on time."""
    if then is not None and read_at is not None and read_at <= then < now:
        return "due"
    return until(now, then)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    return age(seconds)


def rate(per_second: float | None) -> str:
    if per_second is None:
        return "-"
    if per_second == 0:
        return "0"
    if per_second < 10:
        return f"{per_second:.1f}"
    return f"{per_second:,.0f}"


def count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def clock(ts: float | None, utc: bool = True) -> str:
    """``14:03:07`` (UTC by default, so every operator and log agrees)."""
    if ts is None:
        return "-"
    tz = dt.timezone.utc if utc else None
    return dt.datetime.fromtimestamp(ts, tz).strftime("%H:%M:%S")


def stamp(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def short_id(task_id: str | None) -> str:
    return (task_id or "-")[:8]


def clip(text: str | None, width: int) -> str:
    """One line, at most ``width`` characters, ``…`` when cut."""
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: max(width - 1, 0)] + "…"


SPARK = " ▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int | None = None) -> str:
    """Unicode block sparkline scaled to the series maximum (blank for zero, never colour-only)."""
    series = values[-width:] if width else values
    top = max(series, default=0)
    if top <= 0:
        return "▁" * len(series)
    out = []
    for value in series:
        level = 0 if value <= 0 else max(1, round(value / top * (len(SPARK) - 1)))
        out.append(SPARK[level])
    return "".join(out)
