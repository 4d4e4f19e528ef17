"""The broker boundary, kept: the CLI, the console and the worker reach a transport only through
``engine.broker`` (and ``engine.backend``), so none of them imports a transport's client library
or spells out a broker's key layout. A file that needs to cross the line is named below with why."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("tqctl", "engine/worker")
CLIENT_LIBRARIES = frozenset({"redis", "kombu", "amqp"})
OUR_CLIENT = "engine.resp"  # the engine's own Redis client counts as a client library here
# Names of a broker's layout that belong to engine/broker and engine/backend only.
LAYOUT_NAMES = frozenset(
    {"DELAYED", "SEP", "PRIORITY_SEP", "PRIORITY_STEPS", "priority_key", "RUN_NOW", "FAILURE_INDEX", "GROUPS"}
)
LAYOUT_MODULES = frozenset({"engine.broker.redis_scripts"})
LAYOUT_STRINGS = ("_kombu.binding.", "celery-task-meta-", "\x06\x16", "tqctl.delayed", "tqctl.failures")
# Known crossings, each with its reason; the list may only shrink.
ALLOWED = {
    # benchmarks measure the Redis transport itself (raw LPUSH against our publish, key cleanup)
    "tqctl/benchmark.py": "redis bench",
    "tqctl/io_bench.py": "redis bench",
    # the worker's Redis-only parts, owned by other work in progress (issue 14's worker side)
    "engine/worker/consumer.py": "worker",
    "engine/worker/maintenance.py": "worker",
    "engine/worker/settlement.py": "worker",
    "engine/worker/remote.py": "worker",
    "engine/worker/stats.py": "worker",
}


def sources() -> Iterator[tuple[str, ast.Module]]:
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            yield name, ast.parse(path.read_text(), name)


def crossings(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in CLIENT_LIBRARIES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            ours = node.module.startswith(OUR_CLIENT) or (
                node.module == "engine" and any(a.name == "resp" for a in node.names)
            )
            if node.module.split(".")[0] in CLIENT_LIBRARIES or node.module in LAYOUT_MODULES or ours:
                found.append(f"from {node.module} import ...")
            found += [f"from {node.module} import {a.name}" for a in node.names if a.name in LAYOUT_NAMES]
        elif isinstance(node, ast.Attribute) and node.attr in LAYOUT_NAMES:
            found.append(f"uses .{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [f"spells {s!r}" for s in LAYOUT_STRINGS if s in node.value]
    return found


def test_cli_console_and_worker_reach_brokers_only_through_engine_broker() -> None:
    bad = {name: hits for name, tree in sources() if name not in ALLOWED and (hits := crossings(tree))}
    assert not bad, "move these behind engine/broker (or engine/backend):\n" + "\n".join(
        f"{name}: {', '.join(sorted(set(hits)))}" for name, hits in sorted(bad.items())
    )


def test_the_allowed_crossings_still_cross() -> None:
    """An entry that no longer crosses the line is dropped from ALLOWED, so it cannot come back."""
    trees = dict(sources())
    stale = [name for name in ALLOWED if name not in trees or not crossings(trees[name])]
    assert not stale, f"no longer crossing, remove from ALLOWED: {stale}"


def test_the_check_sees_a_crossing() -> None:
    source = (
        "import redis\nfrom engine.broker.redis import DELAYED\nKEY = '_kombu.binding.q'\nx = protocol.PRIORITY_STEPS"
    )
    tree = ast.parse(source)
    assert len(crossings(tree)) == 4
