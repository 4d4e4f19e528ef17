"""Scraping for the metrics tests: a real ``tqctl metrics`` process and prometheus_client's parser."""

from __future__ import annotations

import os
import re
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import ROOT, ChildProcess, wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Exporter(ChildProcess):
    """``python -m tqctl metrics --port 0`` on ``url``; ``url()`` is where it listens."""

    ready_marker = "serving http://"

    def __init__(self, broker_url: str, log_path: Path, *args: str) -> None:
        env = {**os.environ, "TQCTL_BROKER": broker_url, "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", "tqctl", "metrics", "--port", "0", "--interval", "0.3", *args]
        super().__init__(argv, log_path, env)

    def endpoint(self) -> str:
        return endpoint_in(self.log())


def endpoint_in(log: str) -> str:
    found = re.search(r"http://[\d.]+:(\d+)/metrics", log)
    assert found, f"no metrics address in the log:\n{log}"
    return f"http://127.0.0.1:{found.group(1)}/metrics"


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def wait_value(url: str, metric: str, expected: float, /, timeout: float = 30.0, **labels: str) -> Samples:
    """Scrape until ``metric{labels} == expected``; returns that scrape."""
    last: dict[str, Samples] = {}

    def reached() -> bool:
        last["s"] = scrape(url)
        return value(last["s"], metric, **labels) == expected

    try:
        wait_for(reached, timeout, f"{metric}{labels} == {expected}", interval=0.2)
    except AssertionError:
        seen = {k: v for k, v in last.get("s", {}).items() if k[0].startswith("tqctl_")}
        raise AssertionError(f"{metric}{labels} never reached {expected}; last scrape: {seen}") from None
    return last["s"]
