"""The task app: ``tqctl worker -A fastapi_shop.tasks`` runs it."""

from __future__ import annotations

import os

from engine import App

app = App(
    "fastapi_shop",
    broker=os.environ.get("CELERY_BROKER_URL"),  # None: TQCTL_BROKER, else the bundled broker
    backend=os.environ.get("CELERY_RESULT_BACKEND"),
)

PRICES = {"book": 12.5, "pen": 1.25}


@app.task
def quote(item: str, quantity: int) -> dict[str, object]:
    if item not in PRICES:
        raise ValueError(f"no price for {item!r}")
    return {"item": item, "quantity": quantity, "total": round(PRICES[item] * quantity, 2)}
