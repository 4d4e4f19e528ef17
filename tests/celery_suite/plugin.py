"""pytest plugin for the suite's own run: starts the worker under test (``SUITE_WORKER``) for the
session, applies ``skips.SKIPS`` for the mode in ``SUITE_MODE`` and caps each test's time at
``SUITE_TEST_TIMEOUT`` seconds (default 60)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

from tests.celery_suite.skips import reason_for
from tests.celery_suite.workers import anon_nodename, running

_WORKER = pytest.StashKey[contextlib.ExitStack]()


def pytest_sessionstart(session: pytest.Session) -> None:
    """The worker, named as Celery's in-process test worker would be; here, so no test's timeout counts
    its start. ``SUITE_WORKER_PYTHONPATH`` is the worker's tree (the client's tree may be the other)."""
    kind = os.environ.get("SUITE_WORKER")
    if not kind:
        return
    env = {**os.environ, "PYTHONPATH": os.environ.get("SUITE_WORKER_PYTHONPATH", os.environ.get("PYTHONPATH", ""))}
    stack = contextlib.ExitStack()
    stack.enter_context(running(kind, env, Path(os.environ["SUITE_WORKER_LOG"]), name=anon_nodename()))
    session.config.stash[_WORKER] = stack


def pytest_sessionfinish(session: pytest.Session) -> None:
    stack = session.config.stash.get(_WORKER, None)
    if stack is not None:
        stack.close()


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
