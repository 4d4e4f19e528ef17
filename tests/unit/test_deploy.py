"""deploy/: every manifest parses, every ``tqctl`` command in it is a valid invocation of this
CLI (parsed by its own click command tree, nothing run), every metric the dashboard and the alert
rules query is one the exporter or the worker endpoint produces, and the worker's grace period
covers its drain and warm shutdown. (The SIGTERM path itself is proven with real processes by
tests/integration/test_reliability.py::test_warm_shutdown_finishes_running_and_hands_back_reserved,
the preStop drain by tests/integration/test_deploy_drain.py.)
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine.config import DEFAULTS
from tqctl.cli import app
from tqctl.metrics.exporter import ClusterCollector
from tqctl.metrics.tasks import TaskMetrics
from tqctl.metrics.worker import _WorkerGauges
from tqctl.tui.snapshot import ClusterSnapshot, QueueSample, WorkerReply

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict) and doc.get("kind"), f"{path.name}: a document without a kind"
            yield path, doc


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers", []))


def exec_commands(container: dict[str, Any]) -> Iterator[list[str]]:
    yield container.get("command", []) + container.get("args", [])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        yield container.get(probe, {}).get("exec", {}).get("command", [])
    yield container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])


def tqctl_invocations(argv: list[str]) -> Iterator[list[str]]:
    """``tqctl ...`` itself, or each ``tqctl`` line of a ``sh -c`` script (after ``exec``/``while``)."""
    if not argv:
        return
    if Path(argv[0]).name == "tqctl":
        yield argv[1:]
    elif Path(argv[0]).name == "sh" and argv[1:2] == ["-c"]:
        for part in re.split(r"\n|&&|\|\||;|\bdo\b|\bdone\b", argv[2]):
            words = shlex.split(part.replace("$(hostname)", "host"))
            while words and words[0] in ("exec", "while", "if", "!"):
                words = words[1:]
            words = [w for w in words if not w.startswith((">", "2>"))]
            if words and Path(words[0]).name == "tqctl":
                yield words[1:]


def parse(args: list[str]) -> Any:
    """Resolve ``args`` down the CLI's command tree with its own (click) parsing, as ``tqctl`` would
    before running anything; raises typer's UsageError on a bad command, flag or value."""
    command: Any = typer.main.get_command(app)
    ctx = command.make_context("tqctl", list(args), resilient_parsing=False)
    while hasattr(command, "resolve_command"):  # a group (typer vendors click: duck typing)
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            break
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        command, ctx = sub, sub.make_context(name, rest, parent=ctx)
    return ctx


def all_invocations() -> list[tuple[str, list[str]]]:
    found = [
        (path.name, args)
        for path, doc in documents()
        for c in containers(doc)
        for argv in exec_commands(c)
        for args in tqctl_invocations(argv)
    ]
    for unit in UNITS:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string(unit.read_text())
        for key in ("ExecStart", "ExecStartPre", "ExecStopPost"):
            line = parser.get("Service", key, fallback="")
            argv = shlex.split(line.replace("%%", "%").lstrip("-@+!"))
            found += [(unit.name, args) for args in tqctl_invocations(argv)]
    return found


def test_every_manifest_parses_and_the_set_is_complete() -> None:
    kinds = {(path.name, doc["kind"]) for path, doc in documents()}
    assert {("worker.yaml", "Deployment"), ("beat.yaml", "Deployment"), ("redis.yaml", "StatefulSet")} <= kinds
    assert ("keda.yaml", "ScaledObject") in kinds and ("metrics.yaml", "Service") in kinds
    redis = next(doc for path, doc in documents() if doc["kind"] == "StatefulSet")
    assert "--appendonly" in containers(redis)[0]["args"]
    beat = next(doc for path, doc in documents() if doc["metadata"]["name"] == "tqctl-beat")
    assert beat["spec"]["replicas"] == 2
    assert yaml.safe_load((DEPLOY / "prometheus" / "tqctl-alerts.yml").read_text())["groups"]
    assert json.loads((DEPLOY / "grafana" / "tqctl-dashboard.json").read_text())["panels"]


@pytest.mark.parametrize(("where", "args"), all_invocations(), ids=lambda v: v if isinstance(v, str) else None)
def test_every_command_is_a_valid_tqctl_invocation(where: str, args: list[str]) -> None:
    parse(args)


def test_invocations_cover_every_process_and_bad_flags_are_caught() -> None:
    commands = {args[0] for _, args in all_invocations()}
    assert {"worker", "beat", "metrics", "health", "control"} <= commands
    for bad in (["worker", "-A", "x", "--no-such-flag"], ["health", "--max-age", "soon"], ["metric"]):
        with pytest.raises(typer.TyperException):
            parse(bad)


def test_keda_reaches_the_redis_pod_by_its_full_name() -> None:
    """The KEDA operator runs in its own namespace: a short name (redis-0.redis) resolves there,
    to nothing, so the scaler never reads the queue and the worker count never moves."""
    keda = next(doc for _, doc in documents() if doc["kind"] == "ScaledObject")
    redis = next(doc for _, doc in documents() if doc["kind"] == "StatefulSet")
    host, port = keda["spec"]["triggers"][0]["metadata"]["address"].rsplit(":", 1)
    parts = host.split(".")
    assert parts[:2] == [f"{redis['metadata']['name']}-0", redis["spec"]["serviceName"]] and port == "6379"
    assert len(parts) == 6 and parts[3:] == ["svc", "cluster", "local"], f"{host}: not a full name"


def test_worker_grace_period_covers_drain_and_warm_shutdown() -> None:
    worker = next(doc for _, doc in documents() if doc["kind"] == "Deployment" and "worker" in doc["metadata"]["name"])
    spec = worker["spec"]["template"]["spec"]
    script = containers(worker)[0]["lifecycle"]["preStop"]["exec"]["command"][2]
    drain = float(re.search(r"drain (\d+)", script).group(1))  # type: ignore[union-attr]
    shutdown = float(DEFAULTS["tqctl_shutdown_timeout"])
    assert spec["terminationGracePeriodSeconds"] > drain + shutdown


def exported_names() -> set[str]:
    """Every sample name the exporter and the worker endpoint produce, from a scrape of each with
    one task of each outcome, a queue and a worker (no broker needed: the collectors read these)."""
    registry = CollectorRegistry()
    tasks = TaskMetrics(registry)
    for i, etype in enumerate(("sent", "received", "started", "succeeded", "failed", "retried", "revoked")):
        tasks.apply({"type": "task-sent", "uuid": f"u{i}", "name": "t", "timestamp": 1.0})
        tasks.apply({"type": "task-started", "uuid": f"u{i}", "timestamp": 2.0})
        tasks.apply({"type": f"task-{etype}", "uuid": f"u{i}", "timestamp": 3.0, "runtime": 1.0})
    snap = ClusterSnapshot(
        taken_at=time.time(),
        queues=(QueueSample("celery", 2, time.time() - 5),),
        replies={"w1@h": WorkerReply("w1@h", active=[], queues=["celery"])},
        failure_groups=({"open": 1},),
        dead_count=1,
    )
    registry.register(
        ClusterCollector(SimpleNamespace(latest=lambda: (snap, True), tasks=tasks, state_lock=threading.Lock()))
    )  # type: ignore[arg-type]
    worker = SimpleNamespace(hostname="w1@h", active={}, reserved={}, pool=SimpleNamespace(size=lambda: 2))
    registry.register(_WorkerGauges(worker))
    text = generate_latest(registry).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def queried_names() -> set[str]:
    dashboard = (DEPLOY / "grafana" / "tqctl-dashboard.json").read_text()
    alerts = (DEPLOY / "prometheus" / "tqctl-alerts.yml").read_text()
    exprs = [t["expr"] for p in json.loads(dashboard)["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in json.loads(dashboard)["templating"]["list"] if isinstance(v.get("query"), str)]
    exprs += [r["expr"] for g in yaml.safe_load(alerts)["groups"] for r in g["rules"]]
    return {name for expr in exprs for name in re.findall(r"\btqctl_[a-z_]+", expr)}


def test_dashboard_and_alerts_query_only_exported_metrics() -> None:
    queried, exported = queried_names(), exported_names()
    assert len(queried) >= 10
    assert queried <= exported, f"not exported: {sorted(queried - exported)}"
    for name in ("tqctl_queue_depth", "tqctl_queue_oldest_age_seconds", "tqctl_queue_consumers", "tqctl_tasks_total"):
        assert name in queried
