"""pytest plugin for the suite's own run: applies ``skips.SKIPS`` for the mode in ``SUITE_MODE``."""

from __future__ import annotations

import os

import pytest

from tests.celery_suite.skips import reason_for


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mode = os.environ.get("SUITE_MODE", "")
    for item in items:
        reason = reason_for(item.nodeid, mode)
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"[celery_suite skip list] {reason}"))
