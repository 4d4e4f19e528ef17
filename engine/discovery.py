"""``app.autodiscover_tasks()``: import ``<package>.tasks`` for each package, as Celery's loader does.

Only a missing ``tasks`` module is skipped; an import error inside one (a typo, a missing
dependency) propagates, so a broken task module is never silently left out of a worker.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

Packages = Iterable[str] | Callable[[], Iterable[str]] | None


def find_related_module(package: str, related_name: str | None) -> ModuleType | None:
    """``package.related_name`` if it exists (``package`` itself when ``related_name`` is empty).

    Django's INSTALLED_APPS may name an AppConfig class (``shop.apps.ShopConfig``): when the name
    is not a module, its parent package is searched instead."""
    try:
        module = importlib.import_module(package)
        if not related_name:
            return module
    except ModuleNotFoundError:
        parent = package.rpartition(".")[0]
        if not parent:
            raise
        package = parent
    name = f"{package}.{related_name}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


def discover(packages: Packages, related_name: str | None, fixups: Iterable[Any]) -> list[ModuleType]:
    """Import the related module of each package; no packages means the fix-ups' (Django's apps)."""
    names = list(packages() if callable(packages) else packages or ())
    if not names:
        names = [name for fix in fixups if hasattr(fix, "autodiscover_tasks") for name in fix.autodiscover_tasks()]
    found = (find_related_module(name, related_name) for name in dict.fromkeys(names))
    return [module for module in found if module is not None]
