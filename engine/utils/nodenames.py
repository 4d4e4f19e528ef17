"""Node names as Celery spells them (``name@host``), and the ``%n``/``%h``/``%i`` expansion of
file names (``--logfile=%n%I.log``), so paths written for Celery land in the same files here."""

from __future__ import annotations

import multiprocessing
import os
import re
import socket
from collections.abc import Callable, Mapping

SEP = "@"
DEFAULT_NAME = "celery"
_KEY = re.compile(r"%(\w|%)")


def nodename(name: str, hostname: str) -> str:
    return f"{name}{SEP}{hostname}"


def nodesplit(name: str) -> tuple[str | None, str]:
    """``(name, host)``; ``name`` is None when there is no ``@``."""
    short, sep, host = name.partition(SEP)
    return (short, host) if sep else (None, short)


def anon_nodename(hostname: str | None = None, prefix: str = "gen") -> str:
    """The name of a process that is not a worker (``gen<pid>@<host>``): Celery's ``origin`` of a
    message, and the name its in-process test worker answers ``inspect`` under."""
    return nodename(f"{prefix}{os.getpid()}", hostname or socket.gethostname())


def default_nodename(hostname: str | None, default_name: str = DEFAULT_NAME) -> str:
    """``-n`` completed as Celery does: a bare host gets ``default_name@``, no host this machine's."""
    name, host = nodesplit(hostname or "")
    return nodename(name or default_name, host or socket.gethostname())


def simple_format(text: str, keys: Mapping[str, str | Callable[[], str]]) -> str:
    """``%x`` replaced by ``keys['x']`` (called when callable), ``%%`` by ``%``; an unknown key is
    an error naming it, so a typo in a path is not silently kept."""
    if not text:
        return text
    table = {"%": "%", **keys}

    def expand(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in table:
            raise ValueError(f"unknown format key %{key} in {text!r}")
        value = table[key]
        return value() if callable(value) else value

    return _KEY.sub(expand, text)


def host_format(text: str, host: str | None = None, name: str | None = None, **extra: str) -> str:
    """``%h`` host, ``%n`` name (the host's first label by default), ``%d`` domain, ``%i`` pool
    process index (0 in the main process), ``%I`` the same as ``-<index>`` (empty in the main one)."""
    host = host or socket.gethostname()
    first, _, domain = host.partition(".")
    keys: dict[str, str | Callable[[], str]] = {
        "h": host,
        "n": name or first,
        "d": domain,
        "i": lambda: str(process_index() or 0),
        "I": lambda: f"-{process_index()}" if process_index() else "",
        **extra,
    }
    return simple_format(text, keys)


def node_format(text: str, name: str, **extra: str) -> str:
    """``host_format`` for the node ``name`` (``%p`` the full node name)."""
    short, host = nodesplit(name)
    return host_format(text, host, short or DEFAULT_NAME, p=name, **extra)


def process_index() -> int:
    """This pool process's index (1-based; 0 outside a pool): multiprocessing numbers the
    children it starts, and only those."""
    identity = multiprocessing.current_process()._identity
    return int(identity[0]) if identity else 0
