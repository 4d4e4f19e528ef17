"""Termination signals as an exception in the main thread, for the commands whose children run in
sessions of their own (``tqctl up``'s workers and beat, ``tqctl bench``'s workers and servers):
the signal never reaches those children, so a command the default handler killed left them
running. Raised instead, it goes through the command's ``finally`` and ``except`` blocks that stop
them."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Terminated(SystemExit):
    """One of the block's signals arrived; uncaught, the process exits 128 + its number."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


@contextmanager
def terminated_by(*signums: int) -> Iterator[None]:
    """Until the block ends, each of ``signums`` raises ``Terminated``. After the first, they are
    ignored: a second must not cut short the stop the first began. Off the main thread, where
    Python sets no handler, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, _frame: Any) -> None:
        for sig in signums:
            signal.signal(sig, signal.SIG_IGN)
        raise Terminated(signum)

    before = {sig: signal.signal(sig, raise_terminated) for sig in signums}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
