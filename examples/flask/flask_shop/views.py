from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from engine.result import AsyncResult
from flask_shop import tasks
from flask_shop.db import get_db

bp = Blueprint("shop", __name__)


@bp.post("/add")
def start_add() -> dict[str, Any] | tuple[dict[str, str], int]:
    a, b = request.form.get("a", type=int), request.form.get("b", type=int)
    if a is None or b is None:  # a readable 400, not a 500 from int("x") in the view
        return {"error": "a and b must be integers, e.g. -d a=2 -d b=3"}, 400
    result = tasks.add_together.delay(a, b)
    return {"result_id": result.id}


@bp.get("/result/<id>")
def task_result(id: str) -> dict[str, Any]:
    result = AsyncResult(id)
    ready = result.ready()
    return {
        "ready": ready,
        "successful": result.successful() if ready else None,
        "value": result.result if ready else None,
    }


@bp.post("/visits")
def visit() -> dict[str, Any] | tuple[dict[str, str], int]:
    name = request.form.get("name", "").strip()
    if not name:
        return {"error": "name is required, e.g. -d name=ada"}, 400
    return {"result_id": tasks.record_visit.delay(name).id}


@bp.get("/visits")
def visits() -> dict[str, Any]:
    return {"names": [row[0] for row in get_db().execute("SELECT name FROM visit ORDER BY id")]}
