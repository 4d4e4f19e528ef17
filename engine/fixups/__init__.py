"""Framework fix-ups: what an ``App`` does for itself when it finds itself inside a framework.

Celery installs its ``builtin_fixups`` when an app is created; so do we. Today there is one, for
Django (``DJANGO_SETTINGS_MODULE`` set): see ``engine.fixups.django``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.app import App

DJANGO_ENV = "DJANGO_SETTINGS_MODULE"


def install(app: App) -> list[Any]:
    """The fix-ups that apply to this process, installed on ``app``; the app keeps them alive
    (their signal receivers are weak references, as every receiver here is by default)."""
    if not os.environ.get(DJANGO_ENV):  # the module only in a Django project's processes
        return []
    from engine.fixups import django

    found = [django.fixup(app)]
    return [fix for fix in found if fix is not None]
