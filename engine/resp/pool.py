"""Connections shared by a client's threads: a free list and a cap on how many are open.

A caller that finds every connection taken waits (up to ``timeout``) rather than failing: a
worker at ``-c 200`` under a burst must not lose a claim or a result to a full pool."""

from __future__ import annotations

import threading

from engine import forks
from engine.resp.connection import Connection, Locate, Settings
from engine.resp.errors import ConnectionError


class Pool:
    def __init__(
        self,
        settings: Settings,
        locate: Locate | None = None,
        max_connections: int = 2048,
        timeout: float = 20.0,
        connection_class: type[Connection] = Connection,
    ) -> None:
        self.settings = settings
        self.locate = locate
        self.connection_class = connection_class
        self.max_connections = max_connections
        self.timeout = timeout
        self._lock = threading.Condition()
        self._reset()

    def make(self) -> Connection:
        """A new connection with this pool's settings (not yet connected, not counted)."""
        return self.connection_class(self.settings, self.locate)

    def _reset(self) -> None:
        self.pid = forks.pid
        self._free: list[Connection] = []
        self._open = 0

    def _check_fork(self) -> None:
        """A forked child starts with no connections: the parent's sockets stay the parent's."""
        if self.pid != forks.pid:
            with self._lock:
                if self.pid != forks.pid:
                    self._reset()

    def get(self) -> Connection:
        self._check_fork()
        with self._lock:
            if not self._free and self._open >= self.max_connections:
                if not self._lock.wait_for(self._room, self.timeout):
                    raise ConnectionError("No connection available.")
            if self._free:
                return self._free.pop()
            self._open += 1
        return self.make()

    def _room(self) -> bool:
        return bool(self._free) or self._open < self.max_connections

    def release(self, conn: Connection) -> None:
        if conn.pid != forks.pid and conn.sock is not None:
            return  # made before a fork, in another process: not ours to reuse
        with self._lock:
            if self.pid != forks.pid:
                return
            self._free.append(conn)
            self._lock.notify()

    def disconnect(self) -> None:
        """Close every idle connection (one in use is closed by its user's next failure)."""
        with self._lock:
            free, self._free = self._free, []
            self._open -= len(free)
            self._lock.notify_all()
        for conn in free:
            conn.disconnect()

    def __repr__(self) -> str:
        return f"<resp.Pool {self.settings.where()} db={self.settings.db}>"
