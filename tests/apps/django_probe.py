"""The Django example's app plus one probe task, for tests/integration/test_example_django.py.

Run with examples/django on the path and DJANGO_SETTINGS_MODULE=proj.settings.
"""

from __future__ import annotations

from proj.celery import app


@app.task
def connection_was_closed() -> bool:
    """True when the task starts with no open database connection (the worker fix-up closed the
    one the task before it left open)."""
    from django.db import connection

    return connection.connection is None
