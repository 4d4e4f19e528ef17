"""Redis Sentinel for real: a primary, a replica and three sentinels on loopback (the bundled Valkey
binary, which runs as a sentinel with ``--sentinel``). The primary is killed while two workers drain;
workers, a client calling ``delay()`` through the failover and ``tqctl status``/``queues`` follow the
new primary by themselves, and every task's runs are counted in a separate store
(``tests.apps.faults``) to print the fault suite's verdict line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from engine import App
from engine.broker.redis import INFLIGHT
from engine.broker.replicated import NotReplicated
from tests.apps import faults
from tests.faults.report import emit, verdict
from tests.integration.harness import ROOT, WorkerProcess, wait_for
from tests.integration.servers import Server, free_port, valkey_binary, wait_until

pytestmark = pytest.mark.integration
MASTER = "mymaster"


@dataclass
class Cluster:
    primary: Server
    replica: Server
    sentinels: list[Server]

    @property
    def url(self) -> str:
        """Celery's form, plus ``?master_name=`` so CLI commands and workers need no app settings."""
        return ";".join(f"sentinel://127.0.0.1:{s.port}" for s in self.sentinels) + f"?master_name={MASTER}"

    def current_primary(self) -> Server:
        host, port = self.sentinels[0].client().sentinel_get_master_addr_by_name(MASTER)
        return self.primary if int(port) == self.primary.port else self.replica

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.primary]:
            server.kill()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    binary = valkey_binary()
    primary = Server(tmp_path / "primary", free_port(), [], binary).start()
    replica = Server(tmp_path / "replica", free_port(), [f"replicaof 127.0.0.1 {primary.port}"], binary).start()
    sentinels = [
        Server(
            tmp_path / f"sentinel{i}",
            free_port(),
            [
                f"sentinel monitor {MASTER} 127.0.0.1 {primary.port} 2",
                f"sentinel down-after-milliseconds {MASTER} 1000",
                f"sentinel failover-timeout {MASTER} 5000",
                f"sentinel parallel-syncs {MASTER} 1",
            ],
            binary,
            sentinel=True,
        ).start()
        for i in range(3)
    ]
    found = Cluster(primary, replica, sentinels)
    try:
        wait_until(lambda: replica.client().info("replication")["master_link_status"] == "up", 30, "the replica")
        for sentinel in sentinels:
            wait_until(
                lambda s=sentinel: (
                    len(s.client().sentinel_slaves(MASTER)) == 1
                    and int(s.client().sentinel_master(MASTER)["num-other-sentinels"]) == 2
                ),
                60,
                "the sentinels",
            )
        yield found
    finally:
        found.stop()


def tqctl(url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TQCTL_BROKER", None)
    return subprocess.run(
        [sys.executable, "-m", "tqctl", *args, "--broker", url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.timeout(900)
@pytest.mark.parametrize("task_name", ["count", "count_late"])
def test_primary_killed_mid_drain_workers_clients_and_console_follow(
    cluster: Cluster, redis_url: str, redis_client: redis.Redis, tmp_path: Path, task_name: str
) -> None:
    url = cluster.url
    task = getattr(faults, task_name)
    counter = "unix://" + urlsplit(redis_url).path  # the counting app reads it with redis-py's from_url
    faults.app.close()
    faults.app.conf.broker_url = url
    faults.app.conf.result_backend = url
    env = {"FAULT_COUNTER_URL": counter}
    try:
        before = [task.delay().id for _ in range(1500)]
        workers = [
            WorkerProcess(
                url, ["-c", "2", "-n", f"w{i}@%h", "-l", "info"], tmp_path / f"w{i}.log", env, app="tests.apps.faults"
            ).wait_ready(60)
            for i in (1, 2)
        ]
        wait_for(lambda: len(faults.runs(counter)) >= 300, 120, "the drain to be under way")

        during: list[str] = []
        errors: list[BaseException] = []

        def keep_sending() -> None:  # a client that calls delay() straight through the failover
            try:
                for _ in range(300):
                    during.append(task.delay().id)
                    time.sleep(0.01)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        # A long-running console command started before the failover, to see that it follows it too.
        tail_out = tmp_path / "tail.jsonl"
        with open(tail_out, "w") as out:
            tail = subprocess.Popen(
                [sys.executable, "-m", "tqctl", "tail", "--json", "--broker", url],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=out,
                stderr=subprocess.DEVNULL,
            )
        sender = threading.Thread(target=keep_sending)
        sender.start()
        wait_for(lambda: len(during) >= 20, 30, "the client to be sending")
        cluster.primary.kill()
        killed = time.monotonic()
        sender.join(120)
        assert not errors, f"delay() failed during the failover: {errors[0]!r}"
        assert len(during) == 300
        wait_until(lambda: cluster.current_primary() is cluster.replica, 60, "the sentinels to promote the replica")

        after = [task.delay().id for _ in range(100)]
        sent = before + during + after
        runs: dict[str, int] = {}

        def settled() -> bool:
            runs.update(faults.runs(counter))
            return all(runs.get(tid) for tid in after)

        wait_for(settled, 180, "tasks sent after the failover to run")
        new = cluster.replica.client()
        wait_for(lambda: new.llen("celery") == 0, 120, "the queue to drain on the new primary")
        runs = faults.runs(counter)
        recovery = time.monotonic() - killed
        held = [key for key in new.scan_iter(match=INFLIGHT + "*") if new.hlen(key)]
        stuck = []
        for key in held:
            for raw in new.hvals(key):
                stuck.extend(tid for tid in sent if tid.encode() in raw and runs.get(tid, 0) == 0)
        result = emit(f"sentinel_failover_mid_drain_{task_name}", verdict(sent, runs, stuck=stuck, recovery_s=recovery))

        # The console follows too: the tail started before the kill hears tasks sent after it, and a
        # fresh `tqctl status` and `queues` on the same URL answer.
        wait_for(
            lambda: any(json.loads(line).get("uuid") in after for line in tail_out.read_text().splitlines()),
            60,
            "the running tail to hear events from after the failover",
        )
        tail.kill()
        tail.wait(10)
        status = tqctl(url, "status", "--timeout", "3", "--json")
        assert status.returncode == 0, status.stderr
        assert {n["name"].split("@")[0] for n in json.loads(status.stdout)["nodes"]} == {"w1", "w2"}
        queues = tqctl(url, "queues", "--json")
        assert queues.returncode == 0, queues.stderr
        assert "Traceback" not in queues.stderr

        # Every message the client published after the failover ran; whatever the dead primary
        # acknowledged but never replicated is the only thing allowed to be missing.
        assert all(runs.get(tid) for tid in after)
        assert result.stuck == 0
        for worker in workers:
            assert worker.proc.poll() is None, worker.log()[-3000:]
    finally:
        faults.app.close()
        if "tail" in locals() and tail.poll() is None:
            tail.kill()
            tail.wait(10)
        for worker in locals().get("workers", []):
            worker.close()


def test_backend_over_sentinel_and_settings_form(cluster: Cluster, tmp_path: Path) -> None:
    """The app-settings form Celery documents: ``broker_transport_options`` and
    ``result_backend_transport_options`` name the master; results come back through the sentinels."""
    sentinels = ";".join(f"sentinel://127.0.0.1:{s.port}/0" for s in cluster.sentinels)
    app = App(
        "sentinelapp",
        broker=sentinels,
        backend=sentinels.replace("/0", "/1"),
        broker_transport_options={"master_name": MASTER},
        result_backend_transport_options={"master_name": MASTER},
    )
    try:
        app.backend.store("t1", {"status": "SUCCESS", "result": 3, "task_id": "t1"})
        assert cluster.primary.client(db=1).exists("celery-task-meta-t1")
        assert app.AsyncResult("t1").get(timeout=5) == 3
        app.send_task("x.y")
        assert cluster.primary.client(db=0).llen("celery") == 1
    finally:
        app.close()


def test_sentinel_url_without_master_name_is_one_line(cluster: Cluster) -> None:
    url = ";".join(f"sentinel://127.0.0.1:{s.port}" for s in cluster.sentinels)
    done = tqctl(url, "queues")
    assert done.returncode != 0
    assert "master_name" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_publish_wait_replicas(cluster: Cluster) -> None:
    """With ``tqctl_publish_wait_replicas = 1`` delay() returns only once the replica holds the message;
    with the replica gone it says so in one exception after the timeout instead of pretending."""
    app = App(
        "waitapp",
        broker=cluster.url,
        tqctl_publish_wait_replicas=1,
        tqctl_publish_wait_timeout=0.5,
        task_send_sent_event=False,
    )
    plain = App("plainapp", broker=cluster.url, task_send_sent_event=False)
    replica = cluster.replica.client()
    try:
        for _ in range(20):
            app.send_task("x.y")
            assert replica.llen("celery") >= 1  # already on the replica when delay() returned
            replica_len = replica.llen("celery")
            assert replica_len == cluster.primary.client().llen("celery")
        app.send_many("x.y", [((i,), None) for i in range(50)])
        assert replica.llen("celery") == 70
        rates = {}
        for name, which in (("without", plain), ("with", app)):
            start, n = time.perf_counter(), 0
            while time.perf_counter() - start < 2.0:
                which.send_task("x.y")
                n += 1
            rates[name] = n / (time.perf_counter() - start)
        print(
            json.dumps(
                {
                    "delay_per_second_without_wait": round(rates["without"]),
                    "delay_per_second_with_wait_1_replica": round(rates["with"]),
                }
            ),
            flush=True,
        )

        cluster.replica.kill()
        wait_until(
            lambda: cluster.primary.client().info("replication")["connected_slaves"] == 0,
            30,
            "the primary to notice the replica is gone",
        )
        with pytest.raises(NotReplicated, match="0 of 1 replica"):
            app.send_task("x.y")
    finally:
        app.close()
        plain.close()


def test_unreplicated_publishes_are_lost_silently_without_wait_and_reported_with_it(cluster: Cluster) -> None:
    """The one loss Sentinel cannot prevent, made certain: the replica is frozen and cut off, publishes are
    acknowledged by the primary alone, the primary dies and the replica is promoted without them. Plain
    delay() returned for every one of them; with tqctl_publish_wait_replicas=1 none returned: each
    raised NotReplicated, so no caller believes in a message that is gone."""
    plain = App("plain", broker=cluster.url, task_send_sent_event=False)
    waiting = App(
        "waiting",
        broker=cluster.url,
        task_send_sent_event=False,
        tqctl_publish_wait_replicas=1,
        tqctl_publish_wait_timeout=0.2,
    )
    try:
        before = [plain.send_task("x.y", queue="before").id for _ in range(10)]
        wait_until(lambda: cluster.replica.client().llen("before") == 10, 30, "the first messages to replicate")
        cluster.replica.proc.send_signal(signal.SIGSTOP)
        cluster.primary.client().client_kill_filter(_type="replica")  # nothing written from now on reaches it
        acked = [plain.send_task("x.y", queue="after").id for _ in range(20)]
        refused = 0
        for _ in range(5):
            with pytest.raises(NotReplicated):
                waiting.send_task("x.y", queue="waited")
            refused += 1
        cluster.primary.kill()
        cluster.replica.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: cluster.current_primary() is cluster.replica, 60, "the replica's promotion")
        new = cluster.replica.client()
        lost = 20 - new.llen("after")
        print(
            json.dumps(
                {
                    "experiment": "sentinel_unreplicated_publishes",
                    "acknowledged": len(acked),
                    "lost": lost,
                    "with_wait_returned": 0,
                    "with_wait_refused": refused,
                    "kept_before_cut": new.llen("before"),
                }
            ),
            flush=True,
        )
        assert new.llen("before") == len(before)
        assert lost == 20  # acknowledged by delay(), gone after the failover
        assert new.llen("waited") == 0 and refused == 5  # also gone, but every caller was told
        assert plain.send_task("x.y", queue="after").id  # and clients carry on with the new primary
        assert new.llen("after") == 1
    finally:
        if cluster.replica.proc is not None and cluster.replica.proc.poll() is None:
            cluster.replica.proc.send_signal(signal.SIGCONT)
        plain.close()
        waiting.close()
