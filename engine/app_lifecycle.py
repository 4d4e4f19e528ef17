"""The app's lifecycle signals and ``add_periodic_task``, as Celery's Periodic Tasks guide uses them:

    @app.on_after_configure.connect
    def setup_periodic_tasks(sender, **kwargs):
        sender.add_periodic_task(10.0, ping.s("hello"), name="every 10s")

Celery loads its configuration lazily, so receivers connected after ``App(...)`` still hear
``on_after_configure``. Ours is read at once, so the app is *finalized* lazily instead: the first
``app.finalize()`` sends ``on_after_configure`` and then ``on_after_finalize``, once. Beat finalizes
before it reads ``beat_schedule`` and the worker when it imports the task modules, so entries added
by those receivers are scheduled.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.signals import Signal

log = logging.getLogger("engine.app")


class Lifecycle:
    """One app's signals (``app.on_configure``, ``on_after_configure``, ``on_after_finalize``,
    ``on_after_fork``, each sent with the app as sender) and whether it is finalized."""

    def __init__(self) -> None:
        self.on_configure = Signal("app.on_configure")
        self.on_after_configure = Signal("app.on_after_configure")
        self.on_after_finalize = Signal("app.on_after_finalize")
        self.on_after_fork = Signal("app.on_after_fork")
        self.finalized = False

    def finalize(self, app: Any) -> None:
        if self.finalized:
            return
        self.finalized = True  # first: a receiver that reads app.conf or sends must not re-enter
        self.on_configure.send(sender=app)
        self.on_after_configure.send(sender=app, source=app.conf)
        self.on_after_finalize.send(sender=app)


def periodic_entry(
    app: Any, schedule: Any, sig: Any, args: Any = (), kwargs: Any = None, name: str | None = None, **opts: Any
) -> tuple[str, dict[str, Any]]:
    """The ``beat_schedule`` key and entry Celery's ``add_periodic_task`` makes: the signature with
    ``args``/``kwargs`` merged in (as ``clone`` does), its options with ``opts`` over them, keyed by
    ``name`` or the signature's repr."""
    from engine.canvas import Signature

    sig = sig.clone(tuple(args or ()), dict(kwargs or {})) if isinstance(sig, Signature) else app.signature(sig.name)
    entry = {
        "schedule": schedule,
        "task": sig.name,
        "args": tuple(sig.args),
        "kwargs": dict(sig.kwargs),
        "options": {**sig.options, **opts},
    }
    return name or repr(sig), entry


def add_periodic_task(app: Any, key: str, entry: dict[str, Any], named: bool) -> None:
    schedule = app.conf.beat_schedule
    if schedule is None:
        schedule = app.conf.beat_schedule = {}
    if not named and key in schedule:
        log.warning(
            "Periodic task key=%r shadowed a previous unnamed periodic task;"
            " pass name= to add_periodic_task to keep both",
            key,
        )
    schedule[key] = entry
