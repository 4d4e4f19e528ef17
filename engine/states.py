"""Task state names (Celery's strings) and their precedence for merging out-of-order news."""

from __future__ import annotations

PENDING = "PENDING"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"
REJECTED = "REJECTED"
RETRY = "RETRY"
IGNORED = "IGNORED"

# Every state a run or a task event can give, in the order a task goes through them.
TASK_STATES = (PENDING, RECEIVED, STARTED, RETRY, SUCCESS, FAILURE, REVOKED, REJECTED, IGNORED)
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, REJECTED, RETRY})
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})

# Higher wins when two reports about one task arrive out of order (ready states beat the rest).
_PRECEDENCE = {
    PENDING: 0,
    RECEIVED: 1,
    STARTED: 2,
    REJECTED: 3,
    RETRY: 4,
    SUCCESS: 5,
    FAILURE: 5,
    REVOKED: 5,
}


def precedence(state: str) -> int:
    """Rank of a state; unknown (custom) states rank with STARTED, as Celery does."""
    return _PRECEDENCE.get(state, 2)
