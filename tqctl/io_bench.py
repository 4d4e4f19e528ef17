"""``tqctl bench --io``: I/O-bound throughput, client enqueue rates and memory per task in flight.

The I/O is real: a local HTTP server (``SlowHTTP``, in this process) answers every request after a
fixed wait, and each task makes one request. Figures:

- ``io_tasks_per_s``: N tasks each waiting ``wait`` seconds on that server, through a worker at
  ``-c C``, from the first publish to the last stored result (the bound is ``C / wait``).
- ``mem_mb_per_1000_in_flight``: the worker's RSS with 1,000 tasks waiting, minus its RSS before.
- ``enqueue_async_per_s``: ``await task.adelay()`` from ``callers`` concurrent coroutines.
- ``enqueue_raw_lpush_per_s``: the same messages by plain redis-py pipelined LPUSH (1,000 a round
  trip): the transport's ceiling, for reference.

tests/bench/io_compare.py adds Celery's figures (``-P gevent``, its ``delay()`` loop) to the same run.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import resp
from engine.redisconn import client_from_url

QUEUE = "tqctl.bench.io"
Progress = Callable[[str], None]


class BenchError(Exception):
    """A phase made no progress: the message says which."""


@dataclass
class IOOptions:
    tasks: int = 2000
    concurrency: int = 1000
    wait: float = 0.5
    callers: int = 100
    enqueue: int = 10_000
    pool: str = "asyncio"
    stall: float = 60.0


class SlowHTTP:
    """A local HTTP server (asyncio, in a thread) answering ``ok`` after ``delay`` seconds, or after
    N seconds for ``GET /N``; ``in_flight`` counts requests being waited on."""

    def __init__(self, delay: float = 0.5) -> None:
        self.delay = delay
        self.served = 0
        self.in_flight = 0
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="slow-http", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise BenchError("the local HTTP server did not start")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._answer, "127.0.0.1", 0, backlog=4096))
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.in_flight += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].strip(b"/")
            await asyncio.sleep(float(path) if path else self.delay)
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            self.served += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self.in_flight -= 1
            writer.close()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Watched:
    """The worker a phase waits on, and its log: its exit ends the wait with its reason."""

    proc: subprocess.Popen[bytes]
    log: Path | None = None

    def check(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise BenchError(f"the worker exited with code {code}: {last_line(self.log)}")


def last_line(log: Path | None) -> str:
    """A worker's last log line (its own ``tqctl: error:`` prefix dropped): why it stopped."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()] if log else []
    except OSError:
        lines = []
    last = next((line for line in reversed(lines) if line), "")
    return last.removeprefix("tqctl: error: ") or "(nothing in its log)"


def wait_until(check: Callable[[], bool], stall: float, what: str, worker: Watched | None = None) -> None:
    deadline = time.monotonic() + stall
    while not check():
        if worker is not None:
            worker.check()
        if time.monotonic() > deadline:
            raise BenchError(f"gave up after {stall:g}s waiting for {what}")
        time.sleep(0.05)


def stored(client: resp.Client, ids: Sequence[str]) -> int:
    keys = [f"celery-task-meta-{i}" for i in ids]
    return sum(int(client.exists(*keys[n : n + 1000])) for n in range(0, len(keys), 1000))


def run_tasks(
    app: Any, client: resp.Client, name: str, calls: int, path: str, stall: float, worker: Watched | None = None
) -> float:
    """Publish ``calls`` tasks (one round trip) and wait for every result: seconds taken."""
    started = time.monotonic()
    sent = app.send_many(name, [((path,), None)] * calls, queue=QUEUE)
    ids = [r.id for r in sent]
    wait_until(lambda: stored(client, ids) == len(ids), stall, f"{calls} results of {name}", worker)
    return time.monotonic() - started


def measure_worker(
    app: Any,
    client: resp.Client,
    server: SlowHTTP,
    worker: subprocess.Popen[bytes],
    name: str,
    opts: IOOptions,
    log: Path | None = None,
) -> dict[str, float]:
    """I/O tasks/s and memory per 1,000 in flight, through ``worker`` (already started; should it
    exit, the wait ends at once with the last line of ``log``)."""
    watched = Watched(worker, log)
    run_tasks(app, client, name, 1, "0", opts.stall, watched)  # ready, and warmed up
    idle = rss_mb(worker.pid)
    seconds = run_tasks(app, client, name, opts.tasks, "", opts.stall + opts.tasks * opts.wait, watched)
    hold, held = max(5.0, opts.wait), min(1000, opts.concurrency)
    app.send_many(name, [((f"{hold:g}",), None)] * held, queue=QUEUE)
    wait_until(lambda: server.in_flight >= held, opts.stall, f"{held} tasks in flight", watched)
    busy = rss_mb(worker.pid)
    wait_until(lambda: server.in_flight == 0, opts.stall + hold, "the held tasks to finish", watched)
    return {"io_tasks_per_s": opts.tasks / seconds, "mem_mb_per_1000_in_flight": (busy - idle) * 1000 / held}


def start_engine_worker(url: str, server: SlowHTTP, opts: IOOptions, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "tqctl", "worker", "-A", "tqctl.examples.ioapp", "-P", opts.pool]
    argv += ["-c", str(opts.concurrency), "-Q", QUEUE, "-l", "warning", "--broker", url, "--backend", url]
    env = {**os.environ, "TQCTL_IO_URL": server.url, "TQCTL_BENCH_QUEUE": QUEUE}
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)


def enqueue_async(app: Any, total: int, callers: int) -> float:
    """``await task.adelay()`` from ``callers`` coroutines, ``total`` in all: messages/s."""
    from engine.aio import close_loop_clients

    task = app.tasks["tqctl.examples.ioapp.noop"]
    each = max(1, total // callers)

    async def caller() -> None:
        for i in range(each):
            await task.aapply_async((i,), queue=QUEUE)

    async def run() -> float:
        await task.aapply_async((0,), queue=QUEUE)  # the connection is open before the clock starts
        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        elapsed = time.perf_counter() - started
        await close_loop_clients()
        return elapsed

    return each * callers / asyncio.run(run())


def enqueue_raw(client: resp.Client, raw: bytes, total: int) -> float:
    """Plain redis-py: ``total`` LPUSHes of ``raw``, 1,000 per pipeline: messages/s."""
    started = time.perf_counter()
    for start in range(0, total, 1000):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(1000, total - start)):
            pipe.lpush(QUEUE, raw)
        pipe.execute()
    return total / (time.perf_counter() - started)


def engine_app(url: str) -> Any:
    from tqctl.examples import ioapp

    ioapp.app.close()
    ioapp.app.conf.broker_url = url
    ioapp.app.conf.result_backend = url
    return ioapp.app


def measure_engine(url: str, opts: IOOptions, progress: Progress, logdir: Path) -> dict[str, float]:
    """Every engine figure in one run, against the server at ``url`` (its bench queue is emptied)."""
    app = engine_app(url)
    client = client_from_url(url)
    client.delete(QUEUE)
    server = SlowHTTP(opts.wait)
    result: dict[str, float] = {}
    try:
        progress(f"tqctl -P {opts.pool} -c {opts.concurrency}: {opts.tasks} tasks waiting {opts.wait:g}s on HTTP")
        log = logdir / f"tqctl-{opts.pool}.log"
        worker = start_engine_worker(url, server, opts, log)
        try:
            name = "tqctl.examples.ioapp.wait_http" if opts.pool == "asyncio" else "tqctl.examples.ioapp.wait_http_sync"
            result.update(measure_worker(app, client, server, worker, name, opts, log))
        finally:
            stop(worker)
        progress(f"enqueue: {opts.enqueue} messages from {opts.callers} concurrent adelay() callers")
        result["enqueue_async_per_s"] = enqueue_async(app, opts.enqueue, opts.callers)
        raw = client.lindex(QUEUE, 0)  # one of the messages adelay() sent: the same bytes, raw
        client.delete(QUEUE)
        progress(f"enqueue: {opts.enqueue} raw pipelined LPUSH")
        result["enqueue_raw_lpush_per_s"] = enqueue_raw(client, raw if isinstance(raw, bytes) else b"x", opts.enqueue)
        client.delete(QUEUE)
    finally:
        server.close()
        app.close()
        client.close()
    return result
