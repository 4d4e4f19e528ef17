"""Tests of Celery's suite that cannot apply to a given mode, each with its reason: the one place.

Keys are pytest node ids relative to the tree (``t/integration/<file>::<class>::<test>``, a prefix
matches every test under it); values are (modes, reason). Modes: ``ref`` Celery client → Celery
worker, ``a`` Celery client → our worker, ``b`` our client → our worker, ``c`` our client → Celery worker.
"""

from __future__ import annotations

ALL = frozenset({"ref", "a", "b", "c"})
OURS = frozenset({"a", "b"})
ENGINE_CLIENT = frozenset({"b", "c"})

_CANVAS = "t/integration/test_canvas.py::"
_IN_PROCESS = (
    "needs the worker inside the test process (Celery's in-process test worker); here the worker is "
    "a separate process, as in production, so "
)
SKIPS: dict[str, tuple[frozenset[str], str]] = {
    _CANVAS + "test_chord::test_enabling_flag_allow_error_cb_on_chord_header": (
        ALL,
        _IN_PROCESS + "a setting changed on the client app mid-test never reaches the worker",
    ),
    _CANVAS + "test_chord::test_disabling_flag_allow_error_cb_on_chord_header": (
        ALL,
        _IN_PROCESS + "a setting changed on the client app mid-test never reaches the worker",
    ),
    _CANVAS + "test_chord::test_flag_allow_error_cb_on_chord_header_on_upgraded_chord": (
        ALL,
        _IN_PROCESS + "a setting changed on the client app mid-test never reaches the worker",
    ),
    _CANVAS + "test_stamping_mechanism::test_task_received_has_access_to_stamps": (
        ALL,
        _IN_PROCESS + "a task_received handler connected in the test process never fires",
    ),
    _CANVAS + "test_stamping_mechanism::test_linking_stamped_sig": (
        ALL,
        _IN_PROCESS + "a task_received handler connected in the test process never fires",
    ),
    _CANVAS + "test_stamping_mechanism::test_err_linking_stamped_sig": (
        ALL,
        _IN_PROCESS + "a task_received handler connected in the test process never fires",
    ),
    "t/integration/test_tasks.py::test_tasks::test_class_based_task_retried": (
        ALL,
        _IN_PROCESS + "a task class registered on the test's app mid-test is unknown to the worker",
    ),
}


def reason_for(nodeid: str, mode: str) -> str | None:
    for prefix, (modes, reason) in SKIPS.items():
        if mode in modes and (nodeid == prefix or nodeid.startswith(prefix + "::") or nodeid.startswith(prefix + "[")):
            return reason
    return None
