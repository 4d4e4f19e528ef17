"""The console under a flood: first paint, then 10,000 events/s for 30 s into the running console.

Run: ``PYTHONPATH=. python tests/tui/bench_console.py [--rate 10000] [--seconds 30]``. Prints figures,
asserts nothing. The real ``TqctlApp`` runs headless on its Tasks screen (the heaviest to redraw),
refreshing on its normal timer; a feed thread posts ``EventsBatch`` messages every 0.25 s exactly as
the live feed does, with events shaped like a Celery 5.7 prefork worker's (received, started,
succeeded or failed with a traceback, heartbeats). Lag is the time from a batch leaving the feed
thread to the UI thread having folded it into the console's state; memory is the process RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

START = time.perf_counter()  # before Textual or the console is imported: first paint counts the imports

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.bench_event_state import _plain_events, rss_mb  # noqa: E402
from tqctl.tui.app import TqctlApp  # noqa: E402
from tqctl.tui.audit import AuditLog  # noqa: E402
from tqctl.tui.messages import EventsBatch  # noqa: E402

BATCH_INTERVAL = 0.25  # the live feed's default


class FloodSource:
    """Looks like a live source to the App; its event loop posts ``rate`` events a second."""

    kind = "live"
    masked_url = "bench://flood"
    transport = "bench"
    app_spec = None
    cli_broker = None
    adapter = reader = None

    def __init__(self, rate: int, seconds: float) -> None:
        self.rate, self.seconds = rate, seconds
        self.sent = 0
        self.started: float | None = None
        self.finished: float | None = None
        self.go = False

    def run_events(self, post, cancelled) -> None:  # noqa: ANN001
        while not self.go and not cancelled():
            time.sleep(0.01)
        stream = _plain_events(int(self.rate * self.seconds / 3) + 10_000, seed=11)
        total = int(self.rate * self.seconds)
        self.started = time.monotonic()
        tick = self.started
        while not cancelled() and self.sent < total:
            due = min(total, int((time.monotonic() - self.started) * self.rate))
            now = time.time()
            batch = []
            for _ in range(due - self.sent):
                event = next(stream)
                event["timestamp"] = event["local_received"] = now
                batch.append(event)
            if batch:
                self.sent += len(batch)
                post(EventsBatch(batch, time.time()))
            tick += BATCH_INTERVAL
            time.sleep(max(0.0, tick - time.monotonic()))
        self.finished = time.monotonic()

    def run_snapshots(self, post, cancelled) -> None:  # noqa: ANN001
        while not cancelled():
            time.sleep(0.1)

    def request_snapshot(self, slow: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


async def run(rate: int, seconds: float) -> dict[str, float]:
    source = FloodSource(rate, seconds)
    app = TqctlApp(source, audit=AuditLog(None), start="tasks", max_tasks=100_000)
    lags: list[float] = []
    applied = 0
    original = app.model.apply_events

    def apply(events, created=None, backfill=False):  # noqa: ANN001, ANN202
        nonlocal applied
        n = original(events, created=created, backfill=backfill)
        applied += n
        lags.append(app.model.last_lag)
        return n

    app.model.apply_events = apply  # type: ignore[method-assign]
    rss_before = rss_mb()
    async with app.run_test(size=(120, 40)) as pilot:
        while app.first_paint is None:
            await pilot.pause(0.01)
        first_paint = app.first_paint - START  # both perf_counter-based monotonic clocks on Linux
        rss_idle = rss_mb()
        source.go = True
        while source.finished is None or applied < source.sent:
            await pilot.pause(0.2)
        drained = time.monotonic()
        rss_end = rss_mb()
        shown = len(app.screen.table.row_keys)
    stats = app.model.stats()
    lags.sort()
    return {
        "first_paint_s": first_paint,
        "events": source.sent,
        "feed_seconds": source.finished - source.started,
        "drain_after_feed_s": drained - source.finished,
        "lag_median_s": statistics.median(lags),
        "lag_p99_s": lags[int(len(lags) * 0.99) - 1],
        "lag_max_s": lags[-1],
        "tasks_tracked": stats["tasks"],
        "rows_shown": shown,
        "rss_before_mb": rss_before,
        "rss_idle_mb": rss_idle,
        "rss_end_mb": rss_end,
        "state_bytes_mb": stats["approx_bytes"] / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=10_000, help="events per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    r = asyncio.run(run(args.rate, args.seconds))
    print(f"first paint         {r['first_paint_s']:.2f} s after start (imports included)")
    print(
        f"fed                 {r['events']:,} events in {r['feed_seconds']:.1f} s "
        f"({r['events'] / r['feed_seconds']:,.0f}/s); backlog cleared {r['drain_after_feed_s']:.2f} s after"
    )
    print(
        f"lag feed → state    median {r['lag_median_s'] * 1000:.0f} ms · p99 {r['lag_p99_s'] * 1000:.0f} ms · "
        f"max {r['lag_max_s'] * 1000:.0f} ms"
    )
    print(f"tasks tracked       {r['tasks_tracked']:,} ({r['rows_shown']} rows on the Tasks screen)")
    print(
        f"memory (RSS)        {r['rss_idle_mb']:.0f} MB idle → {r['rss_end_mb']:.0f} MB after the flood "
        f"(state's own estimate {r['state_bytes_mb']:.0f} MB)"
    )


if __name__ == "__main__":
    main()
