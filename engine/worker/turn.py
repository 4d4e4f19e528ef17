"""The Feeder and the children take turns to fetch, so a task never starts before one the
Feeder fetched ahead of it.

The parent's ``Feeder`` and every child fetch from Redis. A child's fetch and the Feeder's in
flight at once could be answered out of order: the Feeder's ran first at the server, but the
child's reply came back first and the child started its message while the Feeder's earlier one
was still on its way to the shared in-queue. With ``-c 1`` that ran a task before one sent ahead
of it (one that had to wait behind a long task and expire, say). Now the Feeder fetches and puts
what it got into the in-queue while no child fetches, and no child fetches meanwhile: a child
that finds the Feeder's turn waits on the in-queue for what it shares.

Children do not take turns with each other: each keeps the first message of its batch and
shares the rest, and two of them fetching at once is most of a drain's speed (one at a time
cost 13-21% of it at ``-c 2`` in alternating runs). So at ``-c 2`` and more, a message one
child fetched can start on another before one fetched a moment earlier by the first, as when
two Celery workers share a queue; with ``-c 1`` tasks start in the order they were sent.

A POSIX record lock on a file in memory (or an unlinked one), shared by the children and
exclusive for the Feeder: the kernel drops it when its holder dies (a flag in shared memory
held by a killed child would stop the Feeder for good), and it belongs to a process, so a child
does not inherit the parent's hold across the fork. Within one process only one thread may use
it (the Feeder in the parent, the serving thread in a child): a process's record locks do not
exclude its own threads.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile


class FetchTurn:
    """Made by the parent before its first fork, so every child shares it."""

    def __init__(self) -> None:
        if hasattr(os, "memfd_create"):  # Linux: a file in memory, none on disk even for a moment
            self._fd = os.memfd_create("tqctl-fetch-turn")
            return
        fd, path = tempfile.mkstemp(prefix="tqctl-fetch-turn-")
        os.unlink(path)  # nothing on disk outlives the worker; the open file is the lock
        self._fd = fd

    def try_child(self) -> bool:
        """A child's turn (any number at once) unless the Feeder is fetching; never waits."""
        return self._try(fcntl.LOCK_SH)

    def try_feeder(self) -> bool:
        """The Feeder's turn, while no child is fetching; never waits."""
        return self._try(fcntl.LOCK_EX)

    def _try(self, kind: int) -> bool:
        try:
            fcntl.lockf(self._fd, kind | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return False
            raise
        return True

    def give(self) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)
