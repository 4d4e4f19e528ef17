"""A fast subset of Celery 5.7's own integration tests, in every mode, as part of the normal run.

Each mode starts its own private server and worker process (see run.py). Needs the celery
sdist from the package index once (cached in tests/celery_suite/.cache); offline, the test skips
and says so.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.celery_suite.run import MODES, run_mode
from tests.celery_suite.sdist import Trees, prepare
from tests.celery_suite.subset import SUBSET

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def trees() -> Trees:
    try:
        return prepare()
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"celery {exc.cmd[-3] if len(exc.cmd) > 3 else ''} sdist not available (offline?): {exc}")


@pytest.mark.parametrize("mode", ["a", "b", "c"])
def test_the_subset_passes(trees: Trees, mode: str, tmp_path: Path) -> None:
    results = run_mode(MODES[mode], trees, SUBSET, out_dir=tmp_path)
    ran = {nodeid.split("::", 1)[1].split("[")[0] for nodeid in results}
    assert ran == {s.split("::", 1)[1] for s in SUBSET}, f"not all ran; pytest log: {tmp_path}"
    failed = sorted(n for n, outcome in results.items() if outcome in ("failed", "error"))
    assert not failed, f"mode {mode} ({MODES[mode].title}) failed: {failed}; logs in {tmp_path}"
