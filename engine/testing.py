"""Testing helpers for users' own test suites, as ``celery.contrib.testing`` gives Celery users.

``start_worker(app)`` runs a real worker inside the test process (a thread pool by default, so
tasks defined in the test, mocks and fixtures are visible to it) on the app's broker, and stops
it when the block ends. The pytest fixtures built on it live in ``engine.pytest_plugin``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from engine.joins import allow_join_result

if TYPE_CHECKING:
    from engine.app import App
    from engine.worker.worker import Worker


class WorkerFailed(RuntimeError):
    """The test worker could not start (a broker it cannot reach, a bad setting)."""


@contextmanager
def start_worker(
    app: App,
    *,
    pool: str = "threads",
    concurrency: int = 1,
    queues: Sequence[str] | None = None,
    hostname: str | None = None,
    ready_timeout: float = 10.0,
    shutdown_timeout: float = 10.0,
) -> Iterator[Worker]:
    """A worker consuming ``queues`` (default: the app's default queue) for the ``with`` block.

    Unlike ``tqctl worker`` it installs no signal handlers and runs in a thread; on exit it shuts
    down warm (running tasks finish, reserved ones go back to the queue), cold after
    ``shutdown_timeout`` seconds.
    """
    from engine.worker.worker import Worker

    worker = Worker(
        app,
        concurrency=concurrency,
        pool=pool,
        queues=list(queues) if queues else None,
        hostname=hostname or f"testworker-{uuid.uuid4().hex[:8]}@%h",
    )
    failure: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(install_signals=False)
        except BaseException as exc:  # handed to the test's thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"test-{worker.hostname}", daemon=True)
    thread.start()
    _wait_ready(worker, thread, failure, ready_timeout)
    try:
        with allow_join_result():  # as Celery's test worker: the test's own waits are not refused
            yield worker
    finally:
        worker.request_stop()
        thread.join(shutdown_timeout)
        if thread.is_alive():
            worker.request_stop(cold=True)
            thread.join(shutdown_timeout)


def _wait_ready(worker: Worker, thread: threading.Thread, failure: list[BaseException], timeout: float) -> None:
    """Ready when its consumer runs (the worker started every part before it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.consumer.thread.is_alive():
            return
        if not thread.is_alive():
            cause = failure[0] if failure else None
            raise WorkerFailed(f"test worker did not start: {cause or 'it stopped'}") from cause
        time.sleep(0.02)
    worker.request_stop(cold=True)
    thread.join(5)
    raise WorkerFailed(f"test worker not ready within {timeout:g}s")
