"""pytest plugin for the suite's own run: applies ``skips.SKIPS`` for the mode in ``SUITE_MODE``
and caps each test's time at ``SUITE_TEST_TIMEOUT`` seconds (default 60)."""

from __future__ import annotations

import os
import sys

import pytest

from tests.celery_suite.skips import reason_for


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mode = os.environ.get("SUITE_MODE", "")
    limit = float(os.environ.get("SUITE_TEST_TIMEOUT", "60"))
    for item in items:
        # Celery's @flaky allows 300 s a test; a hung canvas shows in 60 s just as well.
        item.add_marker(pytest.mark.timeout(limit), append=False)
        reason = reason_for(item.nodeid, mode)
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"[celery_suite skip list] {reason}"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    compat = sys.modules.get("tests.celery_suite.compat")
    if compat is not None and compat.STAND_INS:
        terminalreporter.write_line(f"celery_suite stand-ins used (the engine lacks them): {sorted(compat.STAND_INS)}")
