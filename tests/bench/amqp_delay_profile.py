"""Where one ``delay()`` on RabbitMQ spends its time, next to py-amqp's own publish + confirm.

Run: ``PYTHONPATH=. python tests/bench/amqp_delay_profile.py [--n 1000] [--rounds 5] [--profile]
[--celery] [--broker amqp://…]``.

Starts a private RabbitMQ (``tests.integration.rabbitmq``) and a private Valkey for results
(unless ``--broker`` names a RabbitMQ) and configures the client as ``compare.py`` does
(``tqctl.benchmark.engine_target``: confirms on, task-sent events on, ``noop`` with results
ignored). Each round measures, back to back on the same machine, ``--n`` raw publishes each
waiting for its confirm (``amqp_reference``'s loop), ``--n`` ``delay()`` calls, and with
``--celery`` Celery's ``delay()`` (``confirm_publish``); it prints µs per call for each and the
ratio of ours to the raw one in the same round, then the medians. The machine is shared, so
only the same-round ratio means much. ``--profile`` adds a cProfile of one extra round of
``delay()`` (cumulative time, top entries).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine import bundled  # noqa: E402
from tqctl import benchmark  # noqa: E402


@contextlib.contextmanager
def servers(given: str | None) -> Iterator[tuple[str, str]]:
    """(AMQP URL, Redis URL): private ones, stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="tqctl-amqp-profile-") as tmp:
        with bundled.start_private(tmp, None, unix_socket=False) as redis:
            if given:
                yield given, redis.url
                return
            from tests.integration.rabbitmq import RabbitMQ

            node = RabbitMQ(Path(tmp) / "rabbitmq")
            try:
                node.start()
                yield node.url, redis.url
            finally:
                node.close()


def per_call(n: int, call: Callable[[], object]) -> float:
    """µs per call over ``n`` calls."""
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n * 1e6


def interleaved(n: int, calls: Sequence[Callable[[], object]]) -> list[tuple[float, float, float]]:
    """Each call in turn, ``n`` times: per call its median and mean wall µs and its mean CPU µs
    (this thread's). Taking turns call by call (who goes first rotating), a stall of the shared
    machine hits all alike."""
    wall: list[list[float]] = [[] for _ in calls]
    cpu = [0.0 for _ in calls]
    order = list(range(len(calls)))
    for turn in range(n):
        shift = turn % len(calls)  # who goes first rotates, so no call always follows the same one
        for i in order[shift:] + order[:shift]:
            c0, t0 = time.thread_time(), time.perf_counter()
            calls[i]()
            wall[i].append(time.perf_counter() - t0)
            cpu[i] += time.thread_time() - c0
    return [(statistics.median(w) * 1e6, sum(w) / n * 1e6, c / n * 1e6) for w, c in zip(wall, cpu, strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--celery", action="store_true", help="Celery's delay() in each round too")
    parser.add_argument("--broker")
    args = parser.parse_args()
    from engine.broker import connect
    from engine.protocol import task as protocol
    from tests.bench import amqp_reference

    with servers(args.broker) as (amqp_url, redis_url):
        target = benchmark.engine_target(amqp_url, redis_url)
        celery = None
        if args.celery:
            from tests.bench.compare import celery_target

            celery = celery_target(amqp_url, redis_url)
        client = connect(amqp_url)
        client.declare([benchmark.QUEUE])
        raw = protocol.build("noop", queue=benchmark.QUEUE, ignore_result=True)[1]
        conn = amqp_reference.connect(amqp_url)
        channel = conn.channel()
        one = amqp_reference.message(raw)

        def raw_publish() -> None:
            channel.basic_publish_confirm(one, exchange="", routing_key=benchmark.QUEUE)

        for _ in range(50):  # warm: connections open, code imported
            target.send_one()
            raw_publish()
            if celery is not None:
                celery.send_one()
        calls = [raw_publish, target.send_one] + ([celery.send_one] if celery is not None else [])
        names = ["raw", "ours", "celery"]
        for number in range(1, args.rounds + 1):
            stats = interleaved(args.n, calls)
            client.purge(benchmark.QUEUE)
            print(
                f"interleaved {number}: "
                + ", ".join(
                    f"{name} median {m:.0f} mean {a:.0f} cpu {c:.0f} µs"
                    for name, (m, a, c) in zip(names, stats, strict=False)
                )
                + f"; raw/ours median {stats[0][0] / stats[1][0]:.2f} mean {stats[0][1] / stats[1][1]:.2f}",
                flush=True,
            )
        rows: list[tuple[float, ...]] = []
        for number in range(1, args.rounds + 1):
            row = [per_call(args.n, raw_publish), per_call(args.n, target.send_one)]
            if celery is not None:
                row.append(per_call(args.n, celery.send_one))
            client.purge(benchmark.QUEUE)
            rows.append(tuple(row))
            print(f"round {number}: " + describe(row), flush=True)
        medians = [statistics.median(r[i] for r in rows) for i in range(len(rows[0]))]
        ratios = statistics.median(r[0] / r[1] for r in rows)
        print(f"median: {describe(medians)}; median same-round raw/ours {ratios:.2f}")
        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(per_call, args.n, target.send_one)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(35)
            client.purge(benchmark.QUEUE)
        conn.close()
        client.close()
        target.close()
        if celery is not None:
            celery.close()
    return 0


def describe(row: Sequence[float]) -> str:
    text = f"raw {row[0]:.0f} µs, ours {row[1]:.0f} µs (raw/ours {row[0] / row[1]:.2f})"
    if len(row) > 2:
        text += f", celery {row[2]:.0f} µs (celery/ours {row[2] / row[1]:.2f})"
    return text


if __name__ == "__main__":
    sys.exit(main())
