"""The custom commands of ``tests/apps/remote_commands.py`` on a REAL Celery app.

``celery -A tests.apps.remote_celery worker`` runs the same command functions as our worker;
``celery -A tests.apps.remote_celery inspect echo hello 2`` is how Celery's CLI sends them (its CLI
only accepts command names registered in its process, which importing this module does).
The broker comes from ``REMOTE_BROKER``, the result backend from ``REMOTE_BACKEND`` (the broker's
URL when unset: on Redis both are the session server; on RabbitMQ results stay on Redis).
"""

from __future__ import annotations

import os

from celery import Celery
from celery.worker.control import add_consumer, control_command, inspect_command

from tests.apps import remote_commands

app = Celery(
    "remote_celery",
    broker=os.environ.get("REMOTE_BROKER"),
    backend=os.environ.get("REMOTE_BACKEND") or os.environ.get("REMOTE_BROKER"),
    set_as_current=False,
)
app.conf.update(broker_connection_retry_on_startup=True, task_default_queue="celery")
app.task(name="remote.add", rate_limit="50/s")(remote_commands.add_numbers)
app.task(name="remote.retry_later", bind=True)(remote_commands.retry_later)


def _consume_too(state, queue, **kwargs):  # noqa: ANN001, ANN003, ANN202 - Celery's handler shape
    """Celery's add_consumer, as the shared function calls ours."""
    add_consumer(state, queue)
    return {"ok": f"consuming {queue} too"}


_DECORATORS = {"inspect": inspect_command, "control": control_command}
for _name, (_fun, _kind, _options) in remote_commands.COMMANDS.items():
    _DECORATORS[_kind](name=_name, **_options)(_consume_too if _name == "consume_too" else _fun)
