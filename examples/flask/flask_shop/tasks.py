from __future__ import annotations

from engine import shared_task
from flask_shop.db import get_db


@shared_task(ignore_result=False)
def add_together(a: int, b: int) -> int:
    return a + b


@shared_task(ignore_result=False)
def record_visit(name: str) -> int:
    """Uses the app's database through ``current_app``: works only inside an application context."""
    db = get_db()
    db.execute("INSERT INTO visit (name) VALUES (?)", (name,))
    db.commit()
    return int(db.execute("SELECT COUNT(*) FROM visit").fetchone()[0])
