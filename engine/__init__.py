"""A Celery-compatible task queue: change the import, keep your tasks.

The public surface is what Celery users write: ``App`` with ``@app.task``, ``shared_task``,
``AsyncResult`` and signatures; ``engine.signals`` and ``engine.utils.log.get_task_logger`` as in Celery.
"""

from engine import states
from engine.app import App
from engine.canvas import Signature, maybe_signature, signature
from engine.protocol.task import new_id as uuid
from engine.result import AsyncResult, EagerResult
from engine.shared import current_app, current_task, shared_task
from engine.stamping import StampingVisitor
from engine.task import Task
from engine.workflows import GroupResult, chain, chord, chunks, group, xmap, xstarmap

subtask = signature  # Celery's older name, still exported by ``celery``

Celery = App  # so `from engine import Celery` works for the laziest migration

__all__ = [
    "App",
    "AsyncResult",
    "Celery",
    "EagerResult",
    "GroupResult",
    "Signature",
    "StampingVisitor",
    "Task",
    "chain",
    "chord",
    "chunks",
    "current_app",
    "current_task",
    "group",
    "maybe_signature",
    "shared_task",
    "signature",
    "states",
    "subtask",
    "uuid",
    "xmap",
    "xstarmap",
]
