"""deploy/grafana and deploy/prometheus against what a real ``tqctl metrics`` exporter and a real
worker's ``--metrics-port`` endpoint serve: every metric a dashboard panel, a dashboard variable
or an alert rule queries is scraped with every label the query selects, groups, joins or prints
(Prometheus adds ``instance`` and ``job`` itself), and every ``state`` it matches is one the
exporter counts. Renaming a metric or a label fails here.

Both processes count the same tasks, and Prometheus scrapes both when deploy/kubernetes is used
as written (both pods carry the scrape annotation), so a panel that reads a metric the exporter
serves must pin the exporter (the dashboard's ``$exporter``), or ``sum`` doubles every rate.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.harness import ROOT, WorkerProcess
from tests.integration.metrics_helpers import Exporter, Samples, endpoint_in, scrape, value, wait_value
from tqctl.metrics.tasks import COUNTED

DASHBOARD = ROOT / "deploy" / "grafana" / "tqctl-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "tqctl-alerts.yml"
TARGET_LABELS = {"instance", "job"}  # set by Prometheus on every scraped series

Series = dict[str, list[set[str]]]  # sample name → the label names of each of its samples


def series(samples: Samples) -> Series:
    out: Series = {}
    for name, labels in samples:
        out.setdefault(name, []).append({label for label, _ in labels})
    return out


def references(expr: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Each ``tqctl_*`` metric in a PromQL expression, with its label matchers (name → value)."""
    for found in re.finditer(r"\b(tqctl_[a-z_]+)(\{[^}]*\})?", expr):
        matchers = re.findall(r'(\w+)\s*(?:=~|!~|!=|=)\s*"([^"]*)"', found.group(2) or "")
        yield found.group(1), dict(matchers)


def grouping_labels(expr: str) -> set[str]:
    """Labels of ``by``/``on``/``without``/``ignoring`` clauses and ``{{label}}`` legends."""
    out: set[str] = set()
    for clause in re.findall(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)", expr):
        out |= {label.strip() for label in clause.split(",") if label.strip()}
    return out


def queries() -> list[tuple[str, str, set[str]]]:
    """(where, expression, labels its output must carry) for every query in deploy/."""
    board = json.loads(DASHBOARD.read_text())
    found = []
    for panel in board["panels"]:
        for target in panel["targets"]:
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            found.append((f"panel {panel['title']!r}", target["expr"], legend))
    for variable in board["templating"]["list"]:
        call = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", str(variable.get("query", "")))
        if call:
            found.append((f"variable {variable['name']}", call.group(1), {call.group(2)}))
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            texts = " ".join(map(str, rule.get("annotations", {}).values()))
            found.append((f"alert {rule['alert']}", rule["expr"], set(re.findall(r"\$labels\.(\w+)", texts))))
    return found


@pytest.fixture
def scrapes(
    shop, start_worker: Callable[..., WorkerProcess], broker_url: str, tmp_path: Path
) -> Iterator[tuple[Samples, Samples]]:
    """(exporter, worker endpoint) scrapes once a task succeeded, one failed and a queue has a
    message nobody consumes, so every series either serves is there."""
    exporter = Exporter(broker_url, tmp_path / "exporter.log").wait_ready(20)
    try:
        worker = start_worker("-P", "threads", "-c", "2", "--metrics-port", "0", name="w1")
        own = endpoint_in(worker.log())
        shop.add.delay(1, 2)
        shop.fail.delay("boom")
        shop.flaky.delay(1)  # retried once, then succeeds: two starts
        shop.add.apply_async((1, 1), queue="nobody")
        cluster = exporter.endpoint()
        for url in (cluster, own):
            wait_value(url, "tqctl_tasks_total", 1.0, name="tests.apps.shop.add", state="succeeded")
            wait_value(url, "tqctl_tasks_total", 1.0, name="tests.apps.shop.fail", state="failed")
            wait_value(url, "tqctl_tasks_total", 1.0, name="tests.apps.shop.flaky", state="succeeded")
        wait_value(cluster, "tqctl_queue_depth", 1.0, queue="nobody")
        yield scrape(cluster), scrape(own)
    finally:
        exporter.close()


def test_every_query_reads_scraped_metrics_with_the_labels_it_uses(scrapes: tuple[Samples, Samples]) -> None:
    scraped: Series = {}
    for source in scrapes:
        for name, label_sets in series(source).items():
            scraped.setdefault(name, []).extend(label_sets)
    checked = 0
    for where, expr, output_labels in queries():
        needed = (grouping_labels(expr) | output_labels) - TARGET_LABELS
        for name, matchers in references(expr):
            assert name in scraped, f"{where}: {name} is not served by the exporter or a worker"
            labels = needed | (set(matchers) - TARGET_LABELS)
            missing = [label for label in sorted(labels) if not all(label in s for s in scraped[name])]
            assert not missing, f"{where}: {name} has no label {missing} (it has {sorted(scraped[name][0])})"
            states = matchers["state"].split("|") if "state" in matchers else []
            assert set(states) <= set(COUNTED.values()), f"{where}: a state never counted in {states}"
            checked += 1
    assert checked >= 25  # the dashboard's 18 queries and variables and the 6 alert rules, at least


def test_dashboard_reads_each_count_from_one_exporter(scrapes: tuple[Samples, Samples]) -> None:
    exporter, worker = (series(samples) for samples in scrapes)
    assert set(exporter) & set(worker) >= {"tqctl_tasks_total", "tqctl_worker_busy"}  # counted twice
    board = json.loads(DASHBOARD.read_text())
    names = {v["name"]: v for v in board["templating"]["list"]}
    assert "exporter" in names, "no $exporter variable: panels sum the exporter's and the workers' counts"
    assert names["exporter"]["query"] == "label_values(tqctl_broker_up, instance)"
    assert "tqctl_broker_up" in exporter and "tqctl_broker_up" not in worker
    assert not names["exporter"].get("multi") and not names["exporter"].get("includeAll")
    unpinned = [
        (panel["title"], name)
        for panel in board["panels"]
        for target in panel["targets"]
        for name, matchers in references(target["expr"])
        if name in exporter and matchers.get("instance") != "$exporter"
    ]
    assert not unpinned, f"panels summing the exporter's series with the workers' (or a second exporter's): {unpinned}"
    shown = {name for p in board["panels"] for t in p["targets"] for name, _ in references(t["expr"])}
    assert {"tqctl_worker_reserved", "tqctl_worker_concurrency"} <= shown  # the worker endpoint's own gauges


def test_wait_panel_counts_one_wait_per_start(scrapes: tuple[Samples, Samples]) -> None:
    """'Wait (publish to start)': a retried task waited twice, once per start, not three times (the
    retry's own task-sent, which follows the first start, is the second wait's publish)."""
    for samples in scrapes:
        started = value(samples, "tqctl_tasks_total", name="tests.apps.shop.flaky", state="started")
        assert started == 2.0
        assert value(samples, "tqctl_task_wait_seconds_count", name="tests.apps.shop.flaky") == started


def test_a_taken_metrics_port_stops_the_worker_with_one_line_naming_it(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """worker.yaml and tqctl-worker.service fix --metrics-port 9809: taken by something else, the
    worker must say which address, not a bare "Address already in use"."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = start_worker("--metrics-port", str(port), "--metrics-address", "127.0.0.1", ready=False)
        assert worker.wait(60) == 1
    lines = [line for line in worker.log().splitlines() if line.strip()]
    assert lines[-1] == f"tqctl: error: --metrics-port: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert "Traceback" not in worker.log()
