"""Item 7: pool children die with their parent. The OOM killer sends SIGKILL to the worker alone;
children left behind would keep running (and holding memory, sockets, half-done tasks) for ever."""

from __future__ import annotations

import signal
import time

import pytest

from tests.faults.harness import runs, send, wait_settled
from tests.faults.procs import alive
from tests.faults.report import emit, verdict
from tests.integration.harness import wait_for

pytestmark = pytest.mark.integration


def test_prefork_children_die_when_the_parent_is_sigkilled(faults, broker_url, counter_url, start_worker) -> None:
    worker = start_worker("-P", "prefork", "-c", "2", name="oom")
    ids = send(faults.count, 4)  # children that have run something, as in real life
    wait_settled(ids, broker_url, counter_url, 60)
    counted = runs(counter_url)
    wait_for(lambda: len(worker.children()) >= 2, 30, "two pool children")
    kids = worker.children()
    started = time.monotonic()
    worker.signal(signal.SIGKILL)
    worker.proc.wait(10)
    wait_for(lambda: not any(alive(pid) for pid in kids), 30, f"pool children {kids} to exit after the parent died")
    emit("orphans.parent_sigkilled", verdict(ids, counted, recovery_s=time.monotonic() - started))
