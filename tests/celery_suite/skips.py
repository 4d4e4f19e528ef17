"""Tests of Celery's suite that cannot apply to a given mode, each with its reason: the one place.

Keys are pytest node ids relative to the tree (``t/integration/<file>::<class>::<test>``, a prefix
matches every test under it); values are (modes, reason). Modes: ``ref`` Celery client → Celery
worker, ``a`` Celery client → our worker, ``b`` our client → our worker, ``c`` our client → Celery worker.
"""

from __future__ import annotations

ALL = frozenset({"ref", "a", "b", "c"})
OURS = frozenset({"a", "b"})
ENGINE_CLIENT = frozenset({"b", "c"})

SKIPS: dict[str, tuple[frozenset[str], str]] = {
}


def reason_for(nodeid: str, mode: str) -> str | None:
    for prefix, (modes, reason) in SKIPS.items():
        if mode in modes and (nodeid == prefix or nodeid.startswith(prefix + "::") or
                              nodeid.startswith(prefix + "[")):
            return reason
    return None
