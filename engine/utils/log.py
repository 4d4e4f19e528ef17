"""``from engine.utils.log import get_task_logger``: the path Celery users write (``celery.utils.log``)."""

from engine.log import TaskFormatter, get_logger, get_task_logger

__all__ = ["TaskFormatter", "get_logger", "get_task_logger"]
