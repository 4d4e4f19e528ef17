"""Run Celery 5.7's integration tests against our worker and client; print counts per file and mode.

    .venv/bin/python -m tests.celery_suite.run [--modes ref,a,b,c] [--files test_canvas.py ...] [-k EXPR]

Each mode gets its own private server (the bundled Valkey, on TCP because the suite's tasks
connect with ``REDIS_HOST``/``REDIS_PORT``) and its own worker process (``-P prefork -c 2``),
which the pytest session starts (plugin.py) and stops at the end. Results land in
``<cache>/results-<mode>.xml`` (JUnit XML).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.bundled import start_private
from tests.celery_suite.sdist import Trees, cache_dir, prepare
from tests.celery_suite.skips import reason_for

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mode:
    name: str
    title: str
    client: str  # "celery" | "engine": which tree's tests run
    worker: str  # "celery" | "engine"


MODES = {
    "ref": Mode("ref", "Celery client → Celery worker", "celery", "celery"),
    "a": Mode("a", "Celery client → our worker", "celery", "engine"),
    "b": Mode("b", "our client → our worker", "engine", "engine"),
    "c": Mode("c", "our client → Celery worker", "engine", "celery"),
}
OUTCOMES = ("passed", "failed", "error", "skipped")


def _env(tree: Path, url: str, port: int, mode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TQCTL_BACKEND", "PYTEST_ADDOPTS")}
    env.update(
        PYTHONPATH=f"{tree}{os.pathsep}{ROOT}",
        TEST_BROKER=url,
        TEST_BACKEND=url,
        TQCTL_BROKER=url,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(port),
        SUITE_MODE=mode,
        PYTHONUNBUFFERED="1",
        # Tests that run the ``celery`` command (test_worker.py, test_serialization.py) find this venv's.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return env


def run_mode(
    mode: Mode,
    trees: Trees,
    files: Sequence[str],
    keyword: str | None = None,
    extra: Sequence[str] = (),
    out_dir: Path | None = None,
) -> dict[str, str]:
    """Run ``files`` in one mode; returns ``{nodeid: outcome}``."""
    out_dir = out_dir or cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    tree = trees.celery if mode.client == "celery" else trees.engine
    xml = out_dir / f"results-{mode.name}.xml"
    xml.unlink(missing_ok=True)
    # A whole file on the skip list is not even given to pytest (some import what we lack: azure,
    # sqlalchemy); it counts as one skipped entry.
    whole = {f: why for f in files if (why := reason_for(f"t/integration/{f}", mode.name)) is not None}
    files = [f for f in files if f not in whole]
    skipped = {f"t/integration/{f}::(whole file)": "skipped" for f in whole}
    if not files:
        return skipped
    with (
        tempfile.TemporaryDirectory(prefix="celery-suite-") as tmp,
        start_private(Path(tmp) / "server", unix_socket=False) as server,
    ):
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
        worker_tree = trees.celery if mode.worker == "celery" else trees.engine
        env = _env(worker_tree, server.url, port, mode.name)
        env.update(
            SUITE_WORKER=mode.worker,
            SUITE_WORKER_LOG=str(out_dir / f"worker-{mode.name}.log"),
            SUITE_WORKER_PYTHONPATH=f"{worker_tree}{os.pathsep}{ROOT}",
        )
        # The worker is started by the pytest session itself (plugin.py, workers.py).
        argv = [
            sys.executable,
            "-m",
            "pytest",
            *[f"t/integration/{f}" for f in files],
            "-q",
            "-rN",
            "--continue-on-collection-errors",  # a file whose imports fail (azure, ...) errors alone
            "-p",
            "tests.celery_suite.plugin",
            "-p",
            "no:cacheprovider",
            "-c",
            str(tree / "pytest.ini"),
            "--rootdir",
            str(tree),
            f"--junitxml={xml}",
            *extra,
        ]
        if mode.client == "celery":
            argv[argv.index("no:cacheprovider") + 1 : argv.index("no:cacheprovider") + 1] = [
                "-p",
                "celery.contrib.pytest",
            ]
        if keyword:
            argv += ["-k", keyword]
        pidfile = Path(tmp) / "worker.pid"
        env["SUITE_WORKER_PIDFILE"] = str(pidfile)
        try:
            with open(out_dir / f"pytest-{mode.name}.log", "wb") as log:
                subprocess.run(
                    argv,
                    cwd=tree,
                    env={**env, "PYTHONPATH": f"{tree}{os.pathsep}{ROOT}"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        finally:
            _kill_leftover(pidfile)
    return {**read_junit(xml), **skipped}


def _kill_leftover(pidfile: Path) -> None:
    """The worker's process group, if pytest was killed before it could stop the worker itself."""
    try:
        os.killpg(int(pidfile.read_text()), 9)
    except (OSError, ValueError):
        pass  # no pidfile (stopped cleanly) or the group is gone


def read_junit(xml: Path) -> dict[str, str]:
    results: dict[str, str] = {}
    if not xml.exists():
        return results
    for case in ET.parse(xml).getroot().iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        if not classname:  # a file that failed to import: pytest names the module, with no class
            classname, name = name, "(collection)"
        parts = classname.split(".")
        module = next((i for i, p in enumerate(parts) if p.startswith("test_")), len(parts) - 1)
        nodeid = "/".join(parts[: module + 1]) + ".py::" + "::".join([*parts[module + 1 :], name])
        kinds = {child.tag for child in case}
        outcome = (
            "error"
            if "error" in kinds
            else "failed"
            if "failure" in kinds
            else "skipped"
            if "skipped" in kinds
            else "passed"
        )
        results[nodeid] = outcome
    return results


def table(by_mode: dict[str, dict[str, str]]) -> str:
    """``file | mode | passed failed error skipped`` rows, in Markdown."""
    lines = ["| file | mode | passed | failed | error | skipped |", "|---|---|---|---|---|---|"]
    files = sorted({nodeid.split("::")[0].rsplit("/", 1)[-1] for res in by_mode.values() for nodeid in res})
    for file in files:
        for name, results in by_mode.items():
            counts = Counter(o for n, o in results.items() if n.split("::")[0].endswith("/" + file))
            lines.append(
                f"| {file} | {name}: {MODES[name].title} | " + " | ".join(str(counts[o]) for o in OUTCOMES) + " |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="ref,a,b,c")
    parser.add_argument("--files", nargs="+", default=["test_canvas.py"])
    parser.add_argument("-k", dest="keyword")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so ``finally`` stops the server and worker
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        print(f"celery_suite: unknown mode(s) {', '.join(unknown)} (choose from {', '.join(MODES)})", file=sys.stderr)
        return 2
    trees = prepare()
    by_mode = {}
    for name in modes:
        started = time.monotonic()
        by_mode[name] = run_mode(MODES[name], trees, args.files, args.keyword)
        print(
            f"mode {name} ({MODES[name].title}): {len(by_mode[name])} tests in {time.monotonic() - started:.0f}s",
            flush=True,
        )
    print(table(by_mode))
    return 0


if __name__ == "__main__":
    sys.exit(main())
