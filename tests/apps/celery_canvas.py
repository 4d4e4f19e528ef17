"""The canvas tasks on a REAL Celery 5.7 app: ``python -m celery -A tests.apps.celery_canvas worker``.

Same task names and options as ``tests/apps/canvas.py``, and the very same functions (each engine
task keeps its plain function as ``.fun``), so a chord can run its header on one implementation and
its body on the other.

Broker and backend both come from ``TQCTL_BROKER`` (the session's server). Celery 5.7 reads a unix
socket result backend only as ``redis+socket:///path`` (``by_url`` splits the scheme on ``+`` into the
``redis`` backend and a ``socket://`` URL); a bare ``socket://`` or ``unix://`` URL is refused as an
unknown backend, so those are converted here. kombu's broker side takes ``redis+socket://`` as is.
"""

from __future__ import annotations

import os

from celery import Celery

from tests.apps import canvas


def celery_url(url: str | None) -> str | None:
    """A session URL in the form Celery 5.7's Redis broker and result backend both accept."""
    if not url:
        return url
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("socket", "unix"):
        return f"redis+socket://{rest}"
    return url


URL = celery_url(os.environ.get("TQCTL_BROKER"))

app = Celery("celery_canvas", broker=URL, backend=URL)
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=True,
    task_default_queue="celery",
)

for _task in (canvas.add, canvas.mul, canvas.tsum, canvas.boom, canvas.on_error, canvas.log_result, canvas.slow_add):
    _options = {"name": _task.name}
    if _task.acks_late is not None:
        _options["acks_late"] = _task.acks_late
    app.task(**_options)(_task.fun)
