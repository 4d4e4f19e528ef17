"""The operator's view of a RabbitMQ cluster.

Depths and consumer counts come from passive declares (RabbitMQ answers them without the
management plugin). Which queues there are, AMQP cannot say: the default one and those workers
consume, plus, with the management API given (``engine.broker.amqp_api``), every task queue of
the vhost, found by ``discover``. RabbitMQ cannot show a message without taking it, so queues have no peek
and no oldest age here, and an ETA task is held by the worker that received it (the workers'
``scheduled`` replies list them) rather than parked where it could be moved. History, the
failure inbox and revokes are on the Redis result backend, as results are.
"""

from __future__ import annotations

from typing import Any

import amqp.exceptions

from engine.broker.amqp import connected, open_connection
from engine.broker.amqp_api import ManagementApi
from engine.broker.amqp_fanout import FAILURES
from engine.broker.inspect import BackendState, NotHere, QueueFigures, Sign
from engine.config import unreachable_line
from engine.exceptions import BrokerUnavailable, one_line
from engine.history import History

DEFAULT_QUEUES = ("celery",)


class AmqpView:
    def __init__(self, url: str, backend_url: str | None, api_url: str | None = None) -> None:
        from engine.broker.inspect import state_url

        self.url = url
        self.api = ManagementApi(api_url, url) if api_url else None
        self.listed: list[str] = []  # the queues the management API named last
        self.discovery_error: str | None = None  # why the last ask failed (the names before it are kept)
        self._state = BackendState(state_url(url, backend_url))
        self.store: Any = self._state.store
        self.history: History | None = self._state.history

    def close(self) -> None:
        self._state.close()

    def _unavailable(self, exc: BaseException) -> BrokerUnavailable:
        return BrokerUnavailable(unreachable_line(str(self.url), one_line(exc)))

    def _counts(self, names: list[str]) -> tuple[dict[str, tuple[int, int]], str]:
        """(ready messages, consumers) of each existing queue, on one connection, and the server."""
        conn = open_connection(self.url)
        try:
            connected(conn, self.url)
            server = conn.connection.server_properties
            found: dict[str, tuple[int, int]] = {}
            channel = conn.channel()
            for name in names:
                try:
                    _, ready, consumers = channel.queue_declare(name, passive=True)
                except amqp.exceptions.NotFound:  # (RabbitMQ closes the channel on a 404)
                    channel = conn.channel()
                    continue
                found[name] = (int(ready), int(consumers))
            product = server.get("product", "RabbitMQ")
            product = product.decode() if isinstance(product, bytes) else str(product)
            version = server.get("version", "?")
            version = version.decode() if isinstance(version, bytes) else str(version)
            return found, f"{product.lower()} {version}"
        except FAILURES as exc:
            raise self._unavailable(exc) from None
        finally:
            try:
                conn.release()
            except Exception:  # already gone
                pass

    def ping(self) -> None:
        self._counts([])

    def server(self) -> str:
        return self._counts([])[1]

    def discover(self) -> None:
        """Ask the management API, when given, for the vhost's queues (a failure is kept in
        ``discovery_error`` for the caller to show, with the last names it gave)."""
        if self.api is None:
            return
        try:
            self.listed, self.discovery_error = self.api.queue_names(), None
        except BrokerUnavailable as exc:
            self.discovery_error = str(exc)

    def queue_names(self) -> list[str]:
        """The default queue and those the management API named (``discover``); the console and
        ``tqctl queues`` add every queue a worker consumes (their ``active_queues`` replies)."""
        return sorted({*DEFAULT_QUEUES, *self.listed})

    def queues(self, names: list[str]) -> list[QueueFigures]:
        counts, _ = self._counts(names)
        return [QueueFigures(name, counts.get(name, (0, 0))[0], None) for name in names]

    def consumers(self, names: list[str]) -> dict[str, int]:
        counts, _ = self._counts(names)
        return {name: counts.get(name, (0, 0))[1] for name in names}

    def buckets(self, queue: str) -> list[dict[str, int]]:
        return []  # one RabbitMQ queue holds every priority

    def peek(self, queue: str, limit: int = 100) -> list[dict[str, Any]]:
        raise NotHere("RabbitMQ shows a message only by delivering it: queues cannot be peeked on AMQP")

    def delayed(self, limit: int = 200) -> tuple[list[dict[str, Any]], int]:
        return [], 0  # held by the workers until due: see their scheduled replies

    def parked(self, task_id: str) -> dict[str, Any] | None:
        return None  # no delayed set to look in: held by the workers until due

    def run_now(self, task_id: str, sign: Sign) -> str:
        raise NotHere(
            f"cannot move {task_id}: RabbitMQ keeps no delayed set (a task waiting for its ETA is in "
            "its delay levels or held by a worker); revoke it and send it again to run it now"
        )

    def result_meta(self, task_id: str) -> dict[str, Any] | None:
        return self._state.result_meta(task_id)
