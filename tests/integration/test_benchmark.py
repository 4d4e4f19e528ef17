"""``tqctl bench`` end to end on the session's real server: every task counted, every key present.

Small and quick (200 tasks, one run, 1 s idle); figures are never asserted, only that they exist.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from engine.protocol import events
from tests.integration.harness import wait_for
from tqctl import benchmark
from tqctl.benchmark_cluster import LosslessReceiver
from tqctl.commands.bench import bench

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

COUNTERS = (
    "drain_sent",
    "drain_completed",
    "drain_stored_sent",
    "drain_stored_completed",
    "latency_sent",
    "latency_started",
)


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(bench)
    return app


def test_bench_counts_every_task_and_reports_every_figure(broker_url: str) -> None:
    args = [
        "-n",
        "200",
        "--runs",
        "1",
        "--idle",
        "1",
        "--latency-seconds",
        "1",
        "--rate",
        "100",
        "--sparse",
        "2",
        "--stall",
        "30",
        "--broker",
        broker_url,
        "--json",
    ]
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key, _, _ in benchmark.FIGURES:
        assert key in data, key
    for key in COUNTERS + ("engine", "tasks", "runs", "processes", "cpu_model", "cores", "python", "runs_detail"):
        assert key in data, key
    assert data["complete"] is True
    assert data["drain_completed"] == data["drain_sent"] == 200
    assert data["drain_stored_completed"] == data["drain_stored_sent"] == 200
    assert data["latency_started"] == data["latency_sent"] == 100
    for key in (
        "drain_per_s",
        "drain_stored_per_s",
        "enqueue_single_per_s",
        "enqueue_pipelined_per_s",
        "latency_p99_ms",
        "latency_idle_ms",
        "worker_pss_mb",
        "cpu_worker_us_per_task",
        "cpu_broker_us_per_task",
    ):
        assert isinstance(data[key], float), key
    assert data["broker_cpu_source"] == "proc"  # a local server's pid is found through INFO
    assert data["worker_process_count"] == 3  # one worker node, two pool processes
    assert len(data["runs_detail"]) == 1


def _worker_children(parent: int) -> list[int]:
    """``tqctl worker`` processes whose parent is ``parent`` (the bench starts them in sessions of
    their own, so a signal to the bench's group would never reach them)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[1]) == parent and b"worker" in cmdline and stat[0] != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_bench_stopped_with_sigterm_stops_its_workers_and_exits_non_zero(broker_url: str) -> None:
    """``timeout tqctl bench`` or a cancelled CI job sends SIGTERM: the workers must go with it."""
    args = ["-n", "200", "--runs", "1", "--idle", "120", "--latency-seconds", "1", "--rate", "100"]
    bench = subprocess.Popen(
        [sys.executable, "-m", "tqctl", "bench", *args, "--broker", broker_url],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:
        wait_for(lambda: workers.extend(_worker_children(bench.pid)) or workers, 60, "the bench's worker process")
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(60) == 128 + signal.SIGTERM
        wait_for(lambda: not any(_alive(pid) for pid in workers), 30, f"the bench's workers {workers} to stop")
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if bench.poll() is None:
            bench.kill()
            bench.wait(10)


def test_bench_rejects_a_layout_that_does_not_split(broker_url: str) -> None:
    result = CliRunner().invoke(_cli(), ["--processes", "3", "--workers", "2", "--broker", broker_url])
    assert result.exit_code == 2
    assert "multiple of --workers" in result.stderr


def test_lossless_receiver_keeps_every_large_batch_under_short_polls(broker_url: str, redis_client) -> None:
    """Regression for the benchmark's counting: 8 KB batches read with 10 ms polls, none lost."""
    receiver = LosslessReceiver(broker_url)
    count, per_batch = 2000, 24
    batch = [
        events.make(
            "task-succeeded", "bench@test", i, uuid=str(uuid.uuid4()), result="None", runtime=0.0001, padding="x" * 300
        )
        for i in range(per_batch)
    ]
    _, payload = events.encode(batch, "bench@test")

    def publish() -> None:
        for _ in range(count):
            redis_client.publish("/0.celeryev/task.multi", payload)

    receiver.poll(0.2)
    before = redis_client.info("stats")["total_connections_received"]
    sender = threading.Thread(target=publish)
    sender.start()
    got, deadline = 0, time.monotonic() + 60
    while got < count * per_batch and time.monotonic() < deadline:
        got += len(receiver.poll(0.01))
    sender.join()
    receiver.close()
    assert got == count * per_batch
    assert redis_client.info("stats")["total_connections_received"] == before  # never reconnected


def test_publish_many_keeps_order_per_list_and_send_many_delivers(broker_url: str, redis_client) -> None:
    from engine import App
    from engine.broker.redis import RedisBroker
    from engine.protocol import task as protocol

    broker = RedisBroker(broker_url)
    try:
        items = [("bq", str(i).encode(), None) for i in range(2500)] + [("bq", b"high", 9), ("bq", b"last", None)]
        broker.publish_many(items)
        assert [redis_client.rpop("bq") for _ in range(2501)] == [str(i).encode() for i in range(2500)] + [b"last"]
        assert redis_client.rpop(protocol.priority_key("bq", 9)) == b"high"
        broker.publish("bq", b"one")  # the per-thread fast path
        assert redis_client.rpop("bq") == b"one"
    finally:
        broker.close()
    app = App("bulk", broker=broker_url)
    results = app.send_many("bulk.t", [((i,), None) for i in range(300)], queue="bq2")
    raws = redis_client.lrange("bq2", 0, -1)[::-1]
    assert [r.id for r in results] == [protocol.decode(r, frozenset({"application/json"})).id for r in raws]
    assert [protocol.decode(r, frozenset({"application/json"})).args for r in raws] == [[i] for i in range(300)]
    app.close()


def test_compare_on_rabbitmq_runs_both_engines_and_prints_the_table(rabbitmq, tmp_path: Path) -> None:
    """``compare.py --broker amqp://…``: Celery and tqctl on the same RabbitMQ, every task counted,
    the table printed and the password never shown. Figures are not asserted (a loaded machine)."""
    out = tmp_path / "compare.json"
    args = ["--tasks", "200", "--runs", "1", "--bulk", "200", "--idle", "1", "--latency-seconds", "1"]
    run = subprocess.run(
        [sys.executable, "tests/bench/compare.py", "--quick", "--broker", rabbitmq.url, *args, "--rate", "50"]
        + ["--sparse", "1", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "guest:guest" not in run.stdout + run.stderr
    assert "amqp://guest:****@" in run.stdout
    results = json.loads(out.read_text())["results"]
    for engine in ("celery", "tqctl"):
        assert results[engine]["complete"] is True
        assert results[engine]["drain_completed"] == results[engine]["drain_stored_completed"] == 200
        assert isinstance(results[engine]["enqueue_single_per_s"], float)
        assert isinstance(results[engine]["raw_confirm_single_per_s"], float)
        assert isinstance(results[engine]["raw_confirm_transient_single_per_s"], float)
    assert "| drain, results ignored | tasks/s |" in run.stdout
    assert "| raw LPUSH one by one, redis-py (reference) | tasks/s | n/a | n/a | reference |" in run.stdout


def test_bench_on_rabbitmq_with_a_redis_backend_counts_every_task(amqp_url: str, redis_url: str) -> None:
    args = ["-n", "100", "--runs", "1", "--idle", "1", "--latency-seconds", "1", "--rate", "50", "--sparse", "1"]
    result = CliRunner().invoke(_cli(), [*args, "--broker", amqp_url, "--backend", redis_url, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["complete"] is True
    assert data["drain_completed"] == data["drain_stored_completed"] == 100
    assert data["enqueue_raw_lpush_per_s"] is None  # a Redis reference: not measured on AMQP
    assert isinstance(data["drain_per_s"], float)


def test_bench_on_rabbitmq_without_a_redis_backend_is_one_line(amqp_url: str) -> None:
    result = CliRunner().invoke(_cli(), ["--broker", amqp_url], env={"TQCTL_BACKEND": None})
    assert result.exit_code == 1
    assert "needs a Redis result backend" in result.stderr
    assert "Traceback" not in result.output
