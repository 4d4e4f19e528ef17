"""Rate strings (``"10/s"``, ``"100/m"``, ``"1000/h"``) and a token bucket that enforces them."""

from __future__ import annotations

import time

_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(rate: str | float | int | None) -> float | None:
    """Tasks per second, or ``None`` for no limit."""
    if rate is None or rate == "" or rate == 0:
        return None
    if isinstance(rate, (int, float)):
        return float(rate)
    text = rate.strip().lower()
    amount, _, unit = text.partition("/")
    try:
        value = float(amount)
    except ValueError:
        raise ValueError(f"bad rate limit {rate!r}: use N/s, N/m or N/h") from None
    if unit and unit[0] not in _PER:
        raise ValueError(f"bad rate limit {rate!r}: use N/s, N/m or N/h")
    return value / _PER[unit[0] if unit else "s"] if value > 0 else None


class TokenBucket:
    """Allows ``rate`` per second on average with a burst of ``capacity`` (at least one)."""

    def __init__(self, rate: float, capacity: float | None = None) -> None:
        self.rate = rate
        self.capacity = max(1.0, capacity if capacity is not None else 1.0)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self) -> float:
        """Take a token; returns 0 if granted, else seconds until one is available."""
        now = time.monotonic()
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate
