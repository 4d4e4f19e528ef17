"""Item 7: pool children die with their parent. The OOM killer sends SIGKILL to the worker alone;
children left behind would keep running (and holding memory, sockets, half-done tasks) for ever."""

from __future__ import annotations

import signal
import time

import pytest

from tests.faults.kit import alive, app, broker, counter_url, send, wait_for, wait_ran, workers  # noqa: F401
from tests.faults.report import emit, verdict

pytestmark = pytest.mark.integration


def test_prefork_children_die_when_the_parent_is_sigkilled(app, broker, counter_url, workers) -> None:  # noqa: F811
    worker = workers(broker.url, "-P", "prefork", "-c", "2", name="oom")
    ids = send(app, 4)  # children that have run something, as in real life
    runs = wait_ran(counter_url, ids, 60)
    wait_for(lambda: len(worker.children()) >= 2, 30, "two pool children")
    kids = worker.children()
    started = time.monotonic()
    worker.signal(signal.SIGKILL)
    worker.proc.wait(10)
    wait_for(lambda: not any(alive(pid) for pid in kids), 30, f"pool children {kids} to exit after the parent died")
    emit("orphans.parent_sigkilled", verdict(ids, runs, recovery_s=time.monotonic() - started))
