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
