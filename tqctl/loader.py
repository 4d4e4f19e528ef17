"""Find the user's ``App`` from ``-A module`` or ``-A module:attr``, as Celery's ``-A`` does."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from engine.app import App


class AppNotFound(Exception):
    pass


def load_app(spec: str) -> App:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppNotFound(f"cannot import {module_name!r}: {exc}") from None
    if attr:
        found: Any = module
        for part in attr.split("."):
            found = getattr(found, part, None)
        if callable(found) and not isinstance(found, App):
            found = found()
        if not isinstance(found, App):
            raise AppNotFound(f"{spec!r} is not an engine App")
        return found
    for name in ("app", "celery"):
        if isinstance(getattr(module, name, None), App):
            return getattr(module, name)
    apps = [v for v in vars(module).values() if isinstance(v, App)]
    if len(apps) == 1:
        return apps[0]
    raise AppNotFound(f"no App found in module {module_name!r} (name it 'app' or use -A module:attr)")
