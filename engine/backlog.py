"""What a writer keeps while the broker cannot take it: the unsent ahead of what came since, bounded.

Task events (``engine.events.dispatcher``) and history records (``engine.history``) wait this
way through a broker restart instead of being lost; past the bound the oldest go first, so a long
outage costs memory up to the bound and no more.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def put_back(unsent: list[T], newer: list[T], limit: int) -> tuple[list[T], int]:
    """``unsent`` ahead of ``newer``, at most ``limit`` kept; and how many of the oldest went."""
    kept = unsent + newer
    dropped = max(0, len(kept) - limit)
    return kept[dropped:], dropped
