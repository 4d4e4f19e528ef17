"""This process's id, kept current in a forked child without a system call per read.

The send path asks "am I still the process that opened these connections?" on every call;
``os.getpid()`` is a system call (about 0.2-0.3 µs here, more under a sandbox). ``pid`` is
read like any attribute and set again in each child right after ``os.fork()`` (Python's own
fork, which multiprocessing and billiard use too). The id is a fact of the process, not of an
app, so it is kept here, once per process.
"""

from __future__ import annotations

import os

pid = os.getpid()


def _forked() -> None:
    global pid
    pid = os.getpid()


os.register_at_fork(after_in_child=_forked)
