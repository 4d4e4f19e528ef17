"""``tests.apps.faults`` for experiments that need the worker itself set up badly or impatiently: a task
it cannot schedule (its rate limit does not parse: the error comes from inside the worker's dispatch, not
from the message), and a result store given up on after 2 s instead of 30."""

from __future__ import annotations

from tests.apps.faults import _store, app, count, count_late  # noqa: F401 - registered on the same app

RUNS = "fault:runs"
app.conf.tqctl_result_retry_timeout = 2.0


@app.task(bind=True, rate_limit="abc")
def bad_rate(self) -> str:
    _store().hincrby(RUNS, self.request.id, 1)
    return self.request.id
