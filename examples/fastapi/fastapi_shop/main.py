"""An async API that hands work to the task queue: ``uvicorn fastapi_shop.main:api``.

The asyncio client (``engine.aio``) enqueues and waits without a thread: ``await quote.adelay()``
returns once the broker has the message, ``await result.aget()`` is woken by the result's publish.
Concurrent requests share one pipelined connection, and the event loop keeps serving the others
while one waits for its result.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from engine.exceptions import TimeoutError as ResultTimeout
from engine.result import AsyncResult
from fastapi_shop.tasks import app as tasks_app
from fastapi_shop.tasks import quote

api = FastAPI(title="fastapi_shop")


class QuoteRequest(BaseModel):
    item: str
    quantity: int = 1


@api.post("/quotes")
async def create_quote(request: QuoteRequest) -> dict[str, Any]:
    """Enqueue and await the worker's answer."""
    result: AsyncResult = await quote.adelay(request.item, request.quantity)
    try:
        value = await result.aget(timeout=60, propagate=False)
    except ResultTimeout:
        raise HTTPException(504, f"no answer yet; poll /quotes/{result.id}") from None
    if result.failed():
        raise HTTPException(422, str(value))
    return {"task_id": result.id, **value}


@api.post("/quotes/later", status_code=202)
async def queue_quote(request: QuoteRequest) -> dict[str, str]:
    """Enqueue only; the client polls ``GET /quotes/{task_id}``."""
    result = await quote.adelay(request.item, request.quantity)
    return {"task_id": result.id}


@api.get("/quotes/{task_id}")
async def quote_status(task_id: str) -> dict[str, Any]:
    """PENDING (or unknown), SUCCESS with the quote, or FAILURE with the task's error message."""
    return await run_in_threadpool(_status, task_id)  # the result store is read off the event loop


def _status(task_id: str) -> dict[str, Any]:
    result = tasks_app.AsyncResult(task_id)
    state = result.state
    reply = {"task_id": task_id, "state": state, "result": result.result if state == "SUCCESS" else None}
    if state == "FAILURE":
        reply["error"] = str(result.result)
    return reply


@api.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
