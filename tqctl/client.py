"""The CLI's door into the engine: resolve which cluster to talk to and open connections.

Commands import this, not engine internals, so the console and the scripted commands agree
on what ``--broker`` (or its absence) means.
"""

from __future__ import annotations

import os

from engine.broker import Broker, connect
from engine.config import mask_url

DEFAULT_STATE_DIR = ".tqctl"


def resolve_state_dir(option: str | None = None) -> str:
    """``--state-dir``, else ``TQCTL_STATE_DIR``, else ``.tqctl`` (the bundled broker, logs)."""
    return option or os.environ.get("TQCTL_STATE_DIR") or DEFAULT_STATE_DIR


def resolve_broker_url(option: str | None, state_dir: str | None = None) -> str:
    """``--broker``, else ``TQCTL_BROKER``, else the bundled server (started if needed)."""
    url = option or os.environ.get("TQCTL_BROKER")
    if url:
        return url
    from engine import bundled

    return bundled.ensure_running(resolve_state_dir(state_dir))


def open_broker(option: str | None) -> Broker:
    broker = connect(resolve_broker_url(option))
    broker.ping()
    return broker


def masked(url: str) -> str:
    return mask_url(url)
