"""Cold stops of real worker processes: a second Ctrl-C however it lands, and children that will
not go. Tasks (``tests.apps.cold_stop``) hold their process until stopped, and the app's shutdown
timeout is far beyond the test's patience: only a cold stop lets the worker exit in time. Every
check is about the outcome: the log's lines, the ledger, the queue's depth, the broker's record.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import redis

from engine.broker.redis import INFLIGHT
from tests.integration.conftest import client_app
from tests.integration.harness import wait_for

pytestmark = pytest.mark.integration
APP = "tests.apps.cold_stop"
PATIENCE = 60  # seconds to wait for an exit; the app's warm stop would wait 600 on its held tasks


@pytest.fixture
def cold(broker_url: str, backend_url: str) -> Iterator[ModuleType]:
    yield from client_app(APP, broker_url, backend_url)


def started(ledger: Path) -> list[str]:
    return [line.split()[1] for line in ledger.read_text().splitlines() if line.startswith("start ")]


def ended(ledger: Path) -> list[str]:
    return [line.split()[1] for line in ledger.read_text().splitlines() if line.startswith("end ")]


def inflight(client: redis.Redis) -> int:
    return sum(int(client.hlen(key)) for key in client.scan_iter(match=INFLIGHT + "*"))


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_a_second_ctrl_c_while_the_first_is_handled_is_a_cold_stop(
    cold, start_worker, redis_client, ledger: Path, pool: str
) -> None:
    """The second press lands inside the first's handler (a ``worker_shutting_down`` receiver
    sends it), as it can when the two come close together on a loaded machine. Before, it was
    taken for a first press: a second warm stop, the worker waiting on its running task."""
    concurrency = "1" if pool == "solo" else "2"
    w = start_worker("-P", pool, "-c", concurrency, name="w1", app=APP, env={"SECOND_CTRL_C_INSIDE": "1"})
    cold.hold_late.delay("late")
    wait_for(lambda: started(ledger) == ["late"], 20, "the held task to start")
    waiting = [cold.record.delay(f"r{i}").id for i in range(2)] if pool == "solo" else []

    w.signal(signal.SIGINT)
    w.wait(PATIENCE)

    log = w.log()
    assert log.count("warm shutdown") == 1, log
    assert "cold shutdown" in log, log
    assert ended(ledger) == []
    assert int(cold.app.broker.queue_depth("celery")) == 1 + len(waiting)
    assert inflight(redis_client) == 0


def test_a_cold_stop_kills_children_that_will_not_go_and_hands_everything_back(
    cold, start_worker, redis_client, ledger: Path, tmp_path: Path
) -> None:
    """Work-sharing children (prefork on Redis) running tasks that block the signals a stop sends
    them: the parent's wait for them ends at the cold stop's one deadline, the log names them,
    they are killed, and what each held goes back, the early-acked task too (it left the broker's
    in-flight record; its child kept it for the parent). Before, each child got 0.5 s, then
    SIGKILL, and the early-acked task was lost."""
    w = start_worker(
        "-P", "prefork", "-c", "2", name="w1", app=APP, env={"HOLD_DEAF": "1", "HOLD_GATE": str(tmp_path / "gate")}
    )
    children = w.children()
    cold.hold_late.delay("late")
    cold.hold_early.delay("early")
    wait_for(lambda: sorted(started(ledger)) == ["early", "late"], 20, "both held tasks to start")
    for i in range(2):
        cold.record.delay(f"r{i}")
    wait_for(lambda: int(cold.app.broker.queue_depth("celery")) == 0, 20, "the worker to fetch the rest")

    w.signal(signal.SIGQUIT)
    w.wait(PATIENCE)

    assert ended(ledger) == [] and "run " not in ledger.read_text()
    assert int(cold.app.broker.queue_depth("celery")) == 4, "not every unfinished task went back to the queue"
    assert inflight(redis_client) == 0
    log = w.log()
    (line,) = [line for line in log.splitlines() if "cold stop: child process(es)" in line]
    assert line.endswith("; killed") and all(str(pid) in line for pid in children), log
