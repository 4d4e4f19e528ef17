"""``tqctl bench``'s measuring code: throughput, latency, memory and CPU of a real cluster.

One run, against the broker it is pointed at and on a dedicated queue (``tqctl.bench``):

1. enqueue, no worker running: ``delay()`` in a loop, a group of N, and (engine only) the explicit
   bulk API (``app.send_many``: ``protocol.build_many`` + ``broker.publish_many``) next to raw
   pipelined LPUSH of pre-built messages with redis-py, one command per message;
2. worker processes of the bench app start; once every one has announced ``worker-online`` and
   sits idle, N pre-built messages are pushed and the drain runs until every one of them has a
   ``task-succeeded`` event (results ignored, then results stored): rate = N / (last success -
   first push), both on this host's clock;
3. latency: a steady ``rate``/s of ``delay()`` calls; each task's ``task-started`` timestamp minus
   the client's clock just before its call; then, after ``idle`` seconds of silence, a few sparse
   tasks one second apart;
4. RSS/PSS of the worker process tree, then the workers stop.

CPU per task = client (``delay()`` loop, getrusage) + worker tree (``/proc`` utime+stime over the
results-ignored drain) + broker (its CPU over the ``delay()`` loop and that drain, minus the
pipelined fill it did not have to do). ``Target`` hides which engine runs, so
``tests/bench/compare.py`` times Celery with the very same code.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.bundled import client_for
from engine.config import mask_url
from engine.protocol import task as protocol
from engine.protocol.results import task_key
from tqctl import benchmark_sys as sysinfo
from tqctl.benchmark_cluster import BenchError, Progress, Tracker, Workers

__all__ = ["BenchError", "Options", "Target", "engine_target", "measure", "run_once", "rows", "FIGURES"]

QUEUE = "tqctl.bench"
CHUNK = 1000
BLOCK = 1000  # delay() and its raw-LPUSH reference alternate in blocks of this many (Run.send_loop)
QUIESCE = 0.5  # seconds for a client's background event thread to finish before the next figure


@dataclass
class Options:
    tasks: int = 20_000
    runs: int = 3
    processes: int = 2
    workers: int = 1
    pool: str = "prefork"
    rate: float = 200.0
    latency_seconds: float = 10.0
    bulk: int = 10_000
    idle: float = 60.0
    sparse: int = 5
    stall: float = 60.0
    ready_timeout: float = 60.0
    broker_pid: int | None = None  # the broker server's process (its whole tree is counted on AMQP)


@dataclass
class Target:
    """One engine under test: its worker command line and its client's ways of sending."""

    engine: str
    broker_url: str
    worker_argv: Callable[[str, int, str], list[str]]  # (node name, concurrency, pool) -> argv
    noop: str  # task names, for pre-built messages (results ignored / stored)
    noop_result: str
    send_one: Callable[[], str]  # one ``delay()``: returns the task id
    send_group: Callable[[int], Any]  # a group of n no-ops, applied
    send_bulk: Callable[[int], Any] | None = None  # an explicit bulk API (n no-ops, one round trip)
    env: dict[str, str] = field(default_factory=dict)
    queue: str = QUEUE
    close: Callable[[], None] = lambda: None  # the client's own cleanup (its threads, connections)
    # The client's background work for what it sent, done now (tqctl: its task-sent events go
    # out from a thread; Celery's clients send theirs inline, so nothing is left to do).
    settle: Callable[[], None] = lambda: None
    backend_url: str | None = None  # results, when not on the broker (an AMQP broker's Redis backend)

    @property
    def results_url(self) -> str:
        return self.backend_url or self.broker_url


def engine_target(broker_url: str, backend_url: str | None = None) -> Target:
    """Our engine: ``tqctl worker -A tqctl.examples.benchapp`` and its client in this process."""
    from engine import group
    from engine.broker.inspect import is_amqp, state_url
    from engine.exceptions import ImproperlyConfigured
    from tqctl.examples import benchapp

    if is_amqp(broker_url) and state_url(broker_url, backend_url) is None:
        raise ImproperlyConfigured(
            "a benchmark on an AMQP broker needs a Redis result backend (--backend or TQCTL_BACKEND): "
            "results stored and the workers' state are kept there"
        )
    benchapp.app.close()
    benchapp.app.conf.broker_url = broker_url
    if backend_url is not None:
        benchapp.app.conf.result_backend = backend_url
    noop = benchapp.noop

    def argv(node: str, concurrency: int, pool: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tqctl",
            "worker",
            "-A",
            "tqctl.examples.benchapp",
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-Q",
            QUEUE,
            "-n",
            node,
            "-l",
            "warning",
            "--broker",
            broker_url,
        ]

    return Target(
        "tqctl",
        broker_url,
        argv,
        noop.name,
        benchapp.noop_result.name,
        send_one=lambda: noop.delay().id,
        send_group=lambda n: group(noop.s() for _ in range(n)).apply_async(),
        send_bulk=lambda n: benchapp.app.send_many(noop.name, [((), None)] * n, task=noop),
        env={"TQCTL_BROKER": broker_url, **({"TQCTL_BACKEND": backend_url} if backend_url else {})},
        close=benchapp.app.close,
        settle=lambda: _flush_sent_events(benchapp.app),
        backend_url=backend_url,
    )


def _flush_sent_events(app: Any) -> None:
    sent = app.sent_events
    if sent is not None:
        sent.flush()


# -- one run ----------------------------------------------------------------------------------
class Run:
    def __init__(self, target: Target, opts: Options, progress: Progress) -> None:
        from engine.broker import connect
        from engine.broker.inspect import is_amqp

        self.target, self.opts, self.say = target, opts, progress
        self.amqp = is_amqp(target.broker_url)
        self.broker = connect(target.broker_url)
        # Redis: the broker itself; AMQP: the result backend (results stored, their cleanup).
        self.client = client_for(target.results_url, timeout=None)
        self.reference = reference_client(self.client)
        self.clock: sysinfo.BrokerClock | sysinfo.TreeClock = (
            sysinfo.TreeClock(opts.broker_pid)
            if self.amqp
            else sysinfo.BrokerClock(self.client, target.broker_url, opts.broker_pid)
        )
        self.tracker = Tracker(target.broker_url, target.backend_url)
        self.out: dict[str, Any] = {}
        self.cpu_client = self.cpu_worker = 0.0
        self.cpu_broker_enqueue: float | None = None
        self.cpu_broker_drain: float | None = None
        self.cpu_broker_fill: float | None = None

    def close(self) -> None:
        self.purge()
        self.tracker.close()
        self.client.close()
        self.reference.close()
        self.broker.close()

    def purge(self) -> None:
        if self.amqp:
            self.broker.purge(self.target.queue)
            return
        self.client.delete(*(protocol.priority_key(self.target.queue, s) for s in protocol.PRIORITY_STEPS))

    def prebuilt(self, name: str, n: int, ignore_result: bool = True) -> tuple[list[str], list[bytes]]:
        built = [protocol.build(name, queue=self.target.queue, ignore_result=ignore_result) for _ in range(n)]
        return [tid for tid, _ in built], [raw for _, raw in built]

    def execute(self) -> dict[str, Any]:
        self.purge()
        self.enqueue()
        with tempfile.TemporaryDirectory(prefix="tqctl-bench-") as logdir:
            workers = Workers(self.target, self.opts, Path(logdir))
            try:
                workers.wait_ready(self.tracker, self.opts.ready_timeout)
                self.drain(workers, stored=False)
                self.drain(workers, stored=True)
                self.latency()
                self.sparse()
                pids = workers.pids()
                rss, pss = sysinfo.tree_memory_mb(pids)
                self.out.update(worker_rss_mb=rss, worker_pss_mb=pss, worker_process_count=len(pids))
            finally:
                workers.stop()
        self.cpu_totals()
        return self.out

    # -- enqueue --------------------------------------------------------------------------------
    def enqueue(self) -> None:
        n, t, q = self.opts.tasks, self.target, self.target.queue
        for _ in range(20):  # warm: connections open, code paths imported
            t.send_one()
        t.send_group(10)
        self.purge()
        self.send_loop(n)
        self.say(f"  enqueue: a group of {n}")
        self.out["enqueue_group_per_s"] = n / _timed(lambda: t.send_group(n))
        self.purge()
        self.out["enqueue_pipelined_per_s"] = self.out["enqueue_publish_many_per_s"] = None
        b = max(1, min(self.opts.bulk, n))
        raws = self.prebuilt(t.noop, n)[1]
        send_bulk = t.send_bulk
        if send_bulk is not None:
            self.say(f"  enqueue: bulk API, {b} tasks")
            self.out["enqueue_pipelined_per_s"] = b / _timed(lambda: send_bulk(b))
            self._expect_depth(b)
            # The client's task-sent events go out from a background thread about 50 ms later;
            # let them, or their encoding runs inside the next figures (the raw references).
            time.sleep(QUIESCE)
            self.purge()
            self.out["enqueue_publish_many_per_s"] = b / _timed(
                lambda: self.broker.publish_many([(q, raw, None) for raw in raws[:b]])
            )
            self.purge()
        self.out["enqueue_raw_lpush_per_s"] = None
        if not self.amqp:
            self.out["enqueue_raw_lpush_per_s"] = b / _timed(lambda: self._lpush(raws[:b], self.reference))
            self.purge()
        broker0 = self.clock.read()  # the broker's CPU for a pipelined fill of n, which the drain includes
        self._fill(raws)
        self.cpu_broker_fill = _delta(broker0, self.clock.read())
        self.purge()
        pipelined, raw_lpush = self.out["enqueue_pipelined_per_s"], self.out["enqueue_raw_lpush_per_s"]
        self.out["pipelined_vs_raw_lpush"] = pipelined / raw_lpush if pipelined and raw_lpush else None

    def send_loop(self, n: int) -> None:
        """``delay()`` one by one and its reference, raw LPUSH one by one of a pre-built message
        (Redis only), each ``n`` times, in alternating blocks of ``BLOCK``; each rate is its count
        over the time of its own blocks.

        Why blocks: the two used to be timed one after the other (5,000 LPUSH, then the ``delay()``
        loop), so on a shared machine they saw different loads and their ratio moved with it.
        Alternated, both see the same moments; the order flips every pair (raw first, then
        ``delay()`` first) so neither always runs just after a purge or just after the other. The
        same client, server, queue and settings serve both, as before. Nothing is made friendlier
        to ``delay()``: each ``delay()`` block ends with the client's background work for it done
        inside the timer (``Target.settle``: tqctl's task-sent events flushed), so none of it
        spills into the next raw block; in one long loop the last batch of events went out after
        the timer stopped. The queue is emptied after each block, outside the timers."""
        t, q = self.target, self.target.queue
        raw_one = None if self.amqp else self.prebuilt(t.noop, 1)[1][0]
        client = self.reference
        what = f"{n} x delay()" + ("" if raw_one is None else f" and {n} x raw LPUSH (reference)")
        self.say(f"  enqueue: {what}, alternating blocks of {BLOCK}")

        def raw_block(k: int, raw: bytes) -> float:
            elapsed = _timed(lambda: [client.lpush(q, raw) for _ in range(k)])
            self.purge()
            return elapsed

        raw_s = delay_s = cpu = 0.0
        broker: float | None = 0.0
        for number, done in enumerate(range(0, n, BLOCK)):
            k = min(BLOCK, n - done)
            if raw_one is not None and number % 2 == 0:
                raw_s += raw_block(k, raw_one)
            broker0 = self.clock.read()  # before the client's clocks: its round trip is not delay()'s
            cpu0, start = sysinfo.self_cpu_seconds(), time.perf_counter()
            for _ in range(k):
                t.send_one()
            t.settle()
            delay_s += time.perf_counter() - start
            cpu += sysinfo.self_cpu_seconds() - cpu0
            spent = _delta(broker0, self.clock.read())
            broker = broker + spent if broker is not None and spent is not None else None
            self.purge()
            if raw_one is not None and number % 2 == 1:
                raw_s += raw_block(k, raw_one)
        self.cpu_client, self.cpu_broker_enqueue = cpu, broker
        self.out["enqueue_single_per_s"] = n / delay_s
        self.out["enqueue_raw_single_per_s"] = n / raw_s if raw_one is not None else None

    def _expect_depth(self, n: int) -> None:
        if self.amqp:
            depth = self.broker.queue_depth(self.target.queue)
        else:
            depth = int(self.client.llen(self.target.queue))
        if depth != n:
            raise BenchError(f"the bulk enqueue left {depth} messages in {self.target.queue}, not {n}")

    def _fill(self, raws: list[bytes]) -> None:
        """Pre-built messages into the queue as fast as the transport takes them: pipelined LPUSH
        on Redis, on AMQP confirmed batches (persistent, so RabbitMQ has them all)."""
        if self.amqp:
            self.broker.publish_many([(self.target.queue, raw, None) for raw in raws])
        else:
            self._lpush(raws)

    def _lpush(self, raws: list[bytes], client: Any = None) -> None:
        pipe = (client or self.client).pipeline(transaction=False)
        for raw in raws:
            pipe.lpush(self.target.queue, raw)
        pipe.execute()

    # -- drain ----------------------------------------------------------------------------------
    def drain(self, workers: Workers, stored: bool) -> None:
        n, key = self.opts.tasks, "drain_stored" if stored else "drain"
        ids, raws = self.prebuilt(self.target.noop_result if stored else self.target.noop, n, not stored)
        self.say(f"  drain ({'results stored' if stored else 'results ignored'}): {n} tasks")
        self.tracker.succeeded.clear()
        cpu0, broker0 = workers.cpu(), self.clock.read()
        start = time.time()
        for i in range(0, n, CHUNK):
            self._fill(raws[i : i + CHUNK])
        done = self.tracker.wait_all(self.tracker.succeeded, ids, self.opts.stall, self.say, key)
        if not stored:
            self.cpu_worker = workers.cpu() - cpu0
            self.cpu_broker_drain = _delta(broker0, self.clock.read())
        last = max((self.tracker.succeeded[i] for i in ids if i in self.tracker.succeeded), default=None)
        self.out[f"{key}_per_s"] = done / (last - start) if last and last > start else None
        self.out[f"{key}_sent"], self.out[f"{key}_completed"] = n, done
        if stored:
            for i in range(0, n, CHUNK):
                self.client.delete(*(task_key(tid) for tid in ids[i : i + CHUNK]))
        if done < n:
            self.say(f"  warning: only {done} of {n} tasks completed (no progress for {self.opts.stall:.0f}s)")

    # -- latency --------------------------------------------------------------------------------
    def latency(self) -> None:
        rate, count = self.opts.rate, max(1, int(self.opts.rate * self.opts.latency_seconds))
        self.say(f"  latency: {count} tasks at {rate:g}/s")
        self.tracker.started.clear()
        sent: dict[str, float] = {}
        begin = time.perf_counter()
        for i in range(count):
            while (left := begin + i / rate - time.perf_counter()) > 0.0002:
                self.tracker.pump(min(left, 0.05))
            at = time.time()
            sent[self.target.send_one()] = at
        started = self.tracker.wait_all(self.tracker.started, list(sent), self.opts.stall)
        ms = [(self.tracker.started[i] - at) * 1000 for i, at in sent.items() if i in self.tracker.started]
        self.out.update(
            latency_p50_ms=sysinfo.percentile(ms, 50),
            latency_p90_ms=sysinfo.percentile(ms, 90),
            latency_p99_ms=sysinfo.percentile(ms, 99),
            latency_sent=count,
            latency_started=started,
        )

    def sparse(self) -> None:
        self.say(f"  latency after {self.opts.idle:g}s idle: {self.opts.sparse} sparse tasks")
        self.tracker.idle(self.opts.idle)
        ms: list[float] = []
        for k in range(self.opts.sparse):
            if k:
                self.tracker.idle(1.0)
            at = time.time()
            tid = self.target.send_one()
            if self.tracker.wait_all(self.tracker.started, [tid], self.opts.stall):
                ms.append((self.tracker.started[tid] - at) * 1000)
        self.out.update(
            latency_idle_ms=ms[0] if ms else None,
            latency_sparse_p50_ms=sysinfo.median(ms),
            latency_sparse_max_ms=max(ms, default=None),
        )

    # -- CPU ------------------------------------------------------------------------------------
    def cpu_totals(self) -> None:
        n = self.opts.tasks
        client, worker = self.cpu_client / n * 1e6, self.cpu_worker / n * 1e6
        broker = None
        enqueue, drain, fill = self.cpu_broker_enqueue, self.cpu_broker_drain, self.cpu_broker_fill
        if enqueue is not None and drain is not None and fill is not None:
            broker = max(enqueue + drain - fill, 0.0) / n * 1e6
        drain_only = max(drain - fill, 0.0) / n * 1e6 if drain is not None and fill is not None else None
        self.out.update(
            cpu_broker_drain_us_per_task=drain_only,
            cpu_client_us_per_task=client,
            cpu_worker_us_per_task=worker,
            cpu_broker_us_per_task=broker,
            cpu_total_us_per_task=client + worker + (broker or 0.0),
            broker_cpu_source=self.clock.source,
        )


def _timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _delta(before: float | None, after: float | None) -> float | None:
    return after - before if before is not None and after is not None else None


def run_once(target: Target, opts: Options, progress: Progress) -> dict[str, Any]:
    """Every figure of one run; ``complete`` says whether every task sent was counted."""
    run = Run(target, opts, progress)
    try:
        out = run.execute()
    finally:
        run.close()
    out["complete"] = (
        out["drain_completed"] == out["drain_sent"]
        and out["drain_stored_completed"] == out["drain_stored_sent"]
        and out["latency_started"] == out["latency_sent"]
    )
    return out


def describe(target: Target, opts: Options) -> dict[str, Any]:
    return {
        "engine": target.engine,
        "broker": mask_url(target.broker_url),
        "tasks": opts.tasks,
        "runs": opts.runs,
        "processes": opts.processes,
        "workers": opts.workers,
        "pool": opts.pool,
        "latency_rate_per_s": opts.rate,
        "latency_seconds": opts.latency_seconds,
        "idle_seconds": opts.idle,
        **sysinfo.machine(),
    }


def measure(target: Target, opts: Options, progress: Progress) -> dict[str, Any]:
    """``runs`` runs, one after another; figures are medians, counters are sums."""
    runs = []
    try:
        for number in range(1, opts.runs + 1):
            progress(f"run {number}/{opts.runs} ({target.engine}, {opts.tasks} tasks)")
            runs.append(run_once(target, opts, progress))
    finally:
        target.close()
    return {**describe(target, opts), **sysinfo.summarize(runs), "runs_detail": runs}


FIGURES: list[tuple[str, str, str]] = [
    ("enqueue_single_per_s", "enqueue, delay() in a loop", "tasks/s"),
    ("enqueue_raw_single_per_s", "raw LPUSH one by one, redis-py (reference)", "tasks/s"),
    ("enqueue_group_per_s", "enqueue, group of N", "tasks/s"),
    ("enqueue_pipelined_per_s", "bulk enqueue: app.send_many (build + one round trip)", "tasks/s"),
    ("enqueue_publish_many_per_s", "publish_many of pre-built messages", "tasks/s"),
    ("enqueue_raw_lpush_per_s", "raw pipelined LPUSH, redis-py (reference)", "tasks/s"),
    ("pipelined_vs_raw_lpush", "bulk enqueue / raw pipelined LPUSH", "ratio"),
    ("drain_per_s", "drain, results ignored", "tasks/s"),
    ("drain_stored_per_s", "drain, results stored", "tasks/s"),
    ("latency_p50_ms", "publish → start p50 (steady rate)", "ms"),
    ("latency_p90_ms", "publish → start p90 (steady rate)", "ms"),
    ("latency_p99_ms", "publish → start p99 (steady rate)", "ms"),
    ("latency_idle_ms", "publish → start, first task after idle", "ms"),
    ("latency_sparse_p50_ms", "publish → start, sparse tasks p50", "ms"),
    ("latency_sparse_max_ms", "publish → start, sparse tasks max", "ms"),
    ("worker_rss_mb", "worker tree RSS", "MB"),
    ("worker_pss_mb", "worker tree PSS", "MB"),
    ("cpu_client_us_per_task", "CPU per task: client (delay())", "µs"),
    ("cpu_worker_us_per_task", "CPU per task: worker tree", "µs"),
    ("cpu_broker_us_per_task", "CPU per task: broker", "µs"),
    ("cpu_total_us_per_task", "CPU per task: total", "µs"),
    ("cpu_broker_drain_us_per_task", "CPU per task: broker, in the drain (its fill taken off)", "µs"),
]


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"figure": label, "value": result.get(key), "unit": unit, "key": key} for key, label, unit in FIGURES]


def reference_client(ours: Any) -> Any:
    """A plain redis-py client on the same server: the raw LPUSH references are measured with the
    standard Python client, as in every run before the engine had its own (``engine.resp``)."""
    import redis

    s = ours.connection_pool.settings
    if ours.connection_pool.locate is not None:
        return ours  # a sentinel URL: the reference goes through our client
    common: dict[str, Any] = {"db": s.db, "username": s.username, "password": s.password}
    if s.path:
        return redis.Redis(unix_socket_path=s.path, **common)
    tls = {k: v for k, v in (s.tls or {}).items() if k.startswith("ssl_")}
    return redis.Redis(host=s.host, port=s.port, ssl=s.tls is not None, **tls, **common)
