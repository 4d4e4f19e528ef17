"""The Django fix-up, as Celery's ``celery.fixups.django``: installed on every ``App`` created while
``DJANGO_SETTINGS_MODULE`` is set, so a Celery project's ``proj/celery.py`` needs no change.

What it does, and why:
- before the worker imports task modules (``import_modules``), ``django.setup()`` and Django's
  system checks (``CELERY_SKIP_CHECKS`` skips them): a ``tasks.py`` that imports models would
  otherwise fail with ``AppRegistryNotReady``;
- ``app.autodiscover_tasks()`` with no packages looks in every installed Django app;
- in a worker of this app: database connections are closed before and after each task (not in
  eager mode), so a task never inherits a connection the database dropped while the worker was
  idle, nor one left inside a broken transaction by the task before it; caches are closed too;
- in each prefork child just after the fork: connections inherited from the parent are dropped
  without talking to the server (closing a shared socket from the child would break the
  parent's), then closed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid
import warnings
from typing import TYPE_CHECKING, Any

from engine import signals
from engine.fixups import DJANGO_ENV

if TYPE_CHECKING:
    from engine.app import App

log = logging.getLogger("engine.fixups.django")
SKIP_CHECKS_ENV = "CELERY_SKIP_CHECKS"


def fixup(app: App, env: str = DJANGO_ENV) -> DjangoFixup | None:
    """Install the fix-up on ``app`` when the process is a Django project's, else None."""
    if not os.environ.get(env):
        return None
    try:
        import django  # noqa: F401
    except ImportError:
        warnings.warn(f"{env} is set but Django is not installed: the Django fix-up is off", stacklevel=2)
        return None
    return DjangoFixup(app).install()


class DjangoFixup:
    """What every process of a Django project needs: set-up before task modules are imported, and
    the worker's connection handling once a worker of this app starts."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.worker_fixup: DjangoWorkerFixup | None = None
        # worker_init's sender is a worker, not an app: a uid per fix-up keeps two apps' fix-ups apart.
        self._worker_init_uid = ("engine.fixups.django.on_worker_init", uuid.uuid4().hex)

    def install(self) -> DjangoFixup:
        if os.getcwd() not in sys.path:  # manage.py's folder: where the project's packages are
            sys.path.insert(0, os.getcwd())
        signals.import_modules.connect(self.on_import_modules, sender=self.app)
        signals.worker_init.connect(self.on_worker_init, dispatch_uid=self._worker_init_uid)
        return self

    def on_import_modules(self, **_: Any) -> None:
        setup_django(run_checks=not os.environ.get(SKIP_CHECKS_ENV))

    def on_worker_init(self, sender: Any = None, **_: Any) -> None:
        worker_app = getattr(sender, "app", None)
        if worker_app is not None and worker_app is not self.app:
            return  # another app's worker: its own fix-up handles it
        if self.worker_fixup is None:
            self.worker_fixup = DjangoWorkerFixup().install()

    def autodiscover_tasks(self) -> list[str]:
        """Every installed Django app's package (``app.autodiscover_tasks()`` with no packages)."""
        setup_django(run_checks=False)
        from django.apps import apps

        return [config.name for config in apps.get_app_configs()]


def setup_django(run_checks: bool) -> None:
    import django

    django.setup()  # idempotent: a second call returns at once
    if run_checks:
        from django.core.checks import run_checks as checks

        for message in checks():
            if message.is_serious():
                log.warning("Django system check: %s", message)


class DjangoWorkerFixup:
    """Connection handling inside a worker; connected once, when the worker starts."""

    def install(self) -> DjangoWorkerFixup:
        # Strong references: this object lives as long as the worker and nothing else holds it.
        signals.task_prerun.connect(self.on_task_prerun, weak=False)
        signals.task_postrun.connect(self.on_task_postrun, weak=False)
        signals.worker_process_init.connect(self.on_worker_process_init, weak=False)
        signals.beat_embedded_init.connect(self.on_beat_embedded_init, weak=False)
        close_database()
        close_cache()
        return self

    def on_task_prerun(self, sender: Any = None, **_: Any) -> None:
        if not _is_eager(sender):
            close_database()

    def on_task_postrun(self, sender: Any = None, **_: Any) -> None:
        if not _is_eager(sender):
            close_database()
            close_cache()

    def on_beat_embedded_init(self, **_: Any) -> None:
        close_database()

    def on_worker_process_init(self, **_: Any) -> None:
        from django.db import connections

        for conn in connections.all(initialized_only=True):
            if conn.connection is not None:
                _drop_socket(conn)
        close_database()
        close_cache()


def _is_eager(task: Any) -> bool:
    request = getattr(task, "request", None)
    return bool(getattr(request, "is_eager", False))


def _drop_socket(conn: Any) -> None:
    """Close the file descriptor under an inherited connection without any network I/O: a
    proper close would send a goodbye on the socket the parent still uses."""
    from django.db.utils import InterfaceError

    try:
        with conn.wrap_database_errors:
            os.close(conn.connection.fileno())
    except (AttributeError, OSError, TypeError, InterfaceError):
        pass  # sqlite has no socket; a driver without fileno() has nothing to drop


def close_database() -> None:
    """Close every connection this thread opened; the next query opens a fresh one."""
    from django.db import DatabaseError, connections
    from django.db.utils import InterfaceError

    for conn in connections.all(initialized_only=True):
        try:
            conn.close()
        except InterfaceError:
            pass
        except DatabaseError as exc:
            text = str(exc)
            if "closed" not in text and "not connected" not in text:
                raise


def close_cache() -> None:
    with contextlib.suppress(ImportError, AttributeError, TypeError):
        from django.core.cache import close_caches

        close_caches()
