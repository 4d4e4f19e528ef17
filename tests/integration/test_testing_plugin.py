"""The pytest plugin and ``engine.testing.start_worker`` as a user meets them: a small project
(tests/plugin_project: user_conftest.py, user_tasks.py) run by pytester in its own pytest process
with no broker configured, so the plugin starts its private server, runs real in-process workers
and stops everything."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
PROJECT = Path(__file__).resolve().parents[1] / "plugin_project"


def test_a_users_suite_runs_on_the_plugin(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TQCTL_BROKER", raising=False)
    monkeypatch.delenv("TQCTL_BACKEND", raising=False)
    # Stored under names pytest does not collect, so this suite never runs them itself.
    pytester.makeconftest((PROJECT / "user_conftest.py").read_text())
    pytester.makepyfile(test_user_tasks=(PROJECT / "user_tasks.py").read_text())
    result = pytester.runpytest_subprocess(
        "-q", "-p", "no:cacheprovider", "-W", "error::pytest.PytestUnraisableExceptionWarning", timeout=120
    )
    result.assert_outcomes(passed=4)
