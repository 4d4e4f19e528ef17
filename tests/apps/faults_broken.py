"""``tests.apps.faults`` plus a task the worker cannot schedule (its rate limit does not parse): the
error comes from inside the worker's dispatch, not from the message, so it tests the catch-all there."""

from __future__ import annotations

from tests.apps.faults import _store, app, count, count_late  # noqa: F401 - registered on the same app

RUNS = "fault:runs"


@app.task(bind=True, rate_limit="abc")
def bad_rate(self) -> str:
    _store().hincrby(RUNS, self.request.id, 1)
    return self.request.id
