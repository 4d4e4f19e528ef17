"""deploy/kubernetes/worker.yaml's probes, run as written against a worker started with the
Deployment's own arguments (only the app, the health file's folder and the metrics port changed):
the startup probe passes within the budget the manifest gives it, then liveness and readiness
pass; a frozen worker fails both (stale file: 3, no ping reply: 69) and recovers when thawed; a
stopped one fails readiness. ``$(hostname)`` in the readiness probe must name the node that
``-n worker@%h`` made, or every pod would stay unready.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.integration.harness import ROOT, WorkerProcess, wait_for

MANIFEST = ROOT / "deploy" / "kubernetes" / "worker.yaml"
MANIFEST_FILE = "/tmp/tqctl-health"


def container() -> dict[str, Any]:
    worker = next(d for d in yaml.safe_load_all(MANIFEST.read_text()) if d["kind"] == "Deployment")
    return dict(worker["spec"]["template"]["spec"]["containers"][0])


def worker_args(health_file: Path) -> list[str]:
    """The container's ``tqctl worker`` arguments without ``-A`` (the harness gives the test app)."""
    args = [a.replace(MANIFEST_FILE, str(health_file)) for a in container()["command"][2:]]
    app = args.index("-A")
    del args[app : app + 2]
    port = args.index("--metrics-port")
    args[port + 1] = "0"  # 9809 may be taken on a test machine
    return args


class Probes:
    def __init__(self, health_file: Path, broker_url: str) -> None:
        self.health_file = health_file
        bin_dir = str(Path(sys.executable).parent)  # `tqctl` on PATH, as in the image
        self.env = {**os.environ, "TQCTL_BROKER": broker_url, "PYTHONPATH": str(ROOT)}
        self.env["PATH"] = bin_dir + os.pathsep + os.environ["PATH"]

    def run(self, probe: str) -> int:
        argv = [a.replace(MANIFEST_FILE, str(self.health_file)) for a in container()[probe]["exec"]["command"]]
        timeout = container()[probe].get("timeoutSeconds", 1) + 30  # the kubelet's, plus slack for a busy CI
        return subprocess.run(argv, env=self.env, cwd=ROOT, capture_output=True, timeout=timeout).returncode


def test_probes_as_written_against_a_live_worker(broker_url: str, tmp_path: Path) -> None:
    health_file = tmp_path / "health"
    probes = Probes(health_file, broker_url)
    startup = container()["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    worker = WorkerProcess(broker_url, worker_args(health_file), tmp_path / "worker.log", {})
    try:
        wait_for(lambda: probes.run("startupProbe") == 0, budget, "the startup probe to pass within its budget")
        assert probes.run("livenessProbe") == 0
        assert probes.run("readinessProbe") == 0

        worker.signal(signal.SIGSTOP)  # wedged
        try:
            assert probes.run("readinessProbe") == 69
            long_ago = time.time() - 60  # older than the probes' --max-age 20
            os.utime(health_file, (long_ago, long_ago))
            assert probes.run("livenessProbe") == 3
        finally:
            worker.signal(signal.SIGCONT)
        wait_for(lambda: probes.run("livenessProbe") == 0, 20, "liveness after the worker resumes")

        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        assert probes.run("readinessProbe") == 69
        assert probes.run("livenessProbe") == 4  # the file goes with the worker
    finally:
        worker.close()
