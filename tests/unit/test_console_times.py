"""How the console words a time it read from the cluster a few seconds ago."""

from __future__ import annotations

from tqctl.tui import format as fmt


def test_a_beat_entry_due_since_the_last_read_is_due_not_late() -> None:
    """Beat entries are read every few seconds. An entry every 2 s, read at t=100 with its next run
    at t=101, is on time at t=104 as far as anyone knows: beat most likely sent it at t=101."""
    assert fmt.until_as_read(104.0, 101.0, read_at=100.0) == "due"
    assert fmt.until_as_read(100.5, 101.0, read_at=100.0) == "in 0s"


def test_an_entry_already_overdue_when_read_is_late() -> None:
    """Overdue at the read itself: beat had not sent it by then (no leader, or it is stuck)."""
    assert fmt.until_as_read(104.0, 95.0, read_at=100.0) == "9s late"
    assert fmt.until_as_read(104.0, 101.0, read_at=None) == "3s late"  # never read: plain arithmetic
