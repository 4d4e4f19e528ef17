"""The worker Deployment's preStop hook, run as written in deploy/kubernetes/worker.yaml against a
real worker: it drains (the running task and the ones already fetched finish here, nothing else is
fetched) and returns only once the worker has exited, so Kubernetes' SIGTERM finds nothing to do.
The SIGTERM path itself: test_reliability.py::test_warm_shutdown_finishes_running_and_hands_back_reserved.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.integration.harness import ROOT, WorkerProcess, wait_for

MANIFEST = ROOT / "deploy" / "kubernetes" / "worker.yaml"


def pre_stop_script() -> list[str]:
    worker = next(d for d in yaml.safe_load_all(MANIFEST.read_text()) if d["kind"] == "Deployment")
    return worker["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]


def runs(ledger: Path, tag: str) -> int:
    return sum(1 for line in ledger.read_text().splitlines() if line.split()[:1] == [tag])


def test_pre_stop_drains_then_returns_after_the_worker_exits(
    shop, start_worker: Callable[..., WorkerProcess], ledger: Path, broker_url: str, redis_client
) -> None:
    w = start_worker("-P", "prefork", "-c", "1", "--prefetch-multiplier", "4", name="worker")
    shop.slow_late.delay(1.5, "long")
    wait_for(lambda: "start long" in ledger.read_text(), 10, "the long task to start")
    fetched = [shop.record.delay(f"r{i}") for i in range(2)]
    wait_for(lambda: redis_client.llen("celery") == 0, 10, "the worker to fetch the waiting tasks")

    bin_dir = str(Path(sys.executable).parent)  # `tqctl` as the image has it on PATH
    env = {**os.environ, "TQCTL_BROKER": broker_url, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    env["PYTHONPATH"] = str(ROOT)
    hook = subprocess.run(pre_stop_script(), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert hook.returncode == 0, hook.stderr
    assert w.wait(10) == 0  # it stopped by itself (the hook waited until it no longer answered)
    assert runs(ledger, "end") == 1, "the running task did not finish"
    assert [r.get(timeout=5) for r in fetched] == ["r0", "r1"]  # fetched ones ran here, not handed back
    assert redis_client.llen("celery") == 0
