"""The README's example app: a tiny shop with a flaky payment step.

Run it with ``tqctl demo`` (everything in one go) or ``tqctl worker -A tqctl.examples.shop``.
"""

from __future__ import annotations

import random
import time

from engine import App

app = App("shop")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True, max_retries=3)
def process_order(self, order_id: int) -> dict:
    """Charges fail now and then; a retry with backoff usually gets through."""
    try:
        if order_id % 3 == 0 and self.request.retries < 1:
            raise ValueError(f"payment gateway timeout for order {order_id}")
    except ValueError as exc:
        raise self.retry(exc=exc, countdown=0.5 * (self.request.retries + 1)) from exc
    return {"order": order_id, "status": "charged", "attempts": self.request.retries + 1}


@app.task
def ship(order_id: int) -> str:
    time.sleep(random.uniform(0.05, 0.2))
    return f"order {order_id} shipped"


@app.task
def refund(order_id: int) -> None:
    raise RuntimeError(f"order {order_id}: refunds need a manager's approval")


# With ``tqctl up -A tqctl.examples.shop --beat`` beat keeps the shop busy, so the console has
# something to show: orders flow every 2 s, a refund fails now and then, and every 30 s a burst of
# slow reports fills the pools so the next orders wait in line (revoke one from the console).
app.conf.beat_schedule = {
    "new-orders": {"task": "tqctl.examples.shop.new_orders", "schedule": 2.0},
    "month-end-reports": {"task": "tqctl.examples.shop.month_end_reports", "schedule": 30.0},
}


@app.task
def new_orders() -> int:
    first = random.randint(1000, 9999)
    for order_id in range(first, first + 3):
        process_order.delay(order_id)
        ship.delay(order_id)
    if first % 4 == 0:
        refund.delay(first)
    return first


@app.task
def export_report(month: str, seconds: float = 8.0) -> str:
    time.sleep(seconds)
    return f"report {month} exported"


@app.task
def month_end_reports() -> int:
    for region in ("eu", "us", "apac", "latam"):
        export_report.delay(f"2026-12-{region}")
    return 4
