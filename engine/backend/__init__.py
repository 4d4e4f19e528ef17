"""Result backends: where a task's outcome is stored for ``AsyncResult`` to read."""

from __future__ import annotations

from engine.backend.base import ResultBackend
from engine.backend.connect import connect

__all__ = ["ResultBackend", "connect"]
