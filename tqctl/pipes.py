"""stdout's reader going away (``tqctl queues | head -1``, ``| true``), handled once for every command.

Typer and Rich each turn a ``BrokenPipeError`` into ``exit 1``, which reads as a failure in a
``set -o pipefail`` script and is not what coreutils do: they die of SIGPIPE quietly and the shell
reports 128 + 13 = 141. Python ignores SIGPIPE (restoring its default would also kill the process
silently on a broker socket reset), so instead stdout is wrapped: a write or flush that finds the
reader gone raises ``ReaderGone``, an ``OSError`` without EPIPE's errno, which Typer and Rich let
through to ``cli.main``; that exits 141 with nothing on stderr.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

EXIT_READER_GONE = 128 + signal.SIGPIPE  # 141, what a shell reports for `yes | head -1`'s yes


class ReaderGone(OSError):
    """stdout's reader left. Not a ``BrokenPipeError`` on purpose: see the module docstring."""


class _GuardedStdout:
    """sys.stdout as it was, except that a broken pipe raises ``ReaderGone``."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except BrokenPipeError:
            raise ReaderGone("stdout's reader left") from None

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise ReaderGone("stdout's reader left") from None

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, buffer, ... as they were
        return getattr(self._stream, name)


def guard_stdout() -> None:
    """Wrap sys.stdout when it is not a terminal (a terminal's reader does not leave; the console's
    Textual app keeps the stream it knows)."""
    stream = sys.stdout
    if stream is None or isinstance(stream, _GuardedStdout):
        return
    try:
        if stream.isatty():
            return
    except (ValueError, OSError):  # closed
        return
    sys.stdout = _GuardedStdout(stream)  # type: ignore[assignment]


def leave_quietly() -> None:
    """Point stdout at /dev/null (Python's final flush of what is still buffered would fail again and
    print "Exception ignored") and exit as a SIGPIPE'd tool does."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ is not None else 1)
    except (OSError, ValueError):
        pass
    sys.exit(EXIT_READER_GONE)
