from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from engine.result import AsyncResult
from flask_shop import tasks
from flask_shop.db import get_db

bp = Blueprint("shop", __name__)


@bp.post("/add")
def start_add() -> dict[str, Any]:
    result = tasks.add_together.delay(int(request.form["a"]), int(request.form["b"]))
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
def visit() -> dict[str, Any]:
    return {"result_id": tasks.record_visit.delay(request.form["name"]).id}


@bp.get("/visits")
def visits() -> dict[str, Any]:
    return {"names": [row[0] for row in get_db().execute("SELECT name FROM visit ORDER BY id")]}
