# Load the task app whenever Django starts, so ``shared_task`` declarations bind to it and
# ``delay_on_commit`` in a view sends to the configured broker (Celery's documented layout).
from .celery import app as celery_app

__all__ = ("celery_app",)
