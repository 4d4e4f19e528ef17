"""The fast subset of Celery's suite that the normal test run checks in modes a, b and c.

Chosen to cover what issue 12 fixed on the worker (chains with groups and chords in them,
Task.replace, chords of chains, a failed header failing the chords after it) and to pass with a
real Celery worker too; the full run is ``python -m tests.celery_suite.run``.
"""

from __future__ import annotations

CANVAS = "test_canvas.py::test_chain::"
TASKS = "test_tasks.py::"
SUBSET = [
    CANVAS + "test_simple_chain",
    CANVAS + "test_single_chain",
    CANVAS + "test_complex_chain",
    CANVAS + "test_group_results_in_chain",
    CANVAS + "test_chain_of_chords_with_two_tasks",
    CANVAS + "test_chain_replaced_with_a_chain_and_a_callback",
    CANVAS + "test_header_failure_fails_the_chords_after_it",
    CANVAS + "test_group_in_center_of_chain",
    CANVAS + "test_chain_with_a_nested_chain_led_by_a_group",
    CANVAS + "test_nested_chain_group_lone",
    # worker-side behaviour fixed for issue 12 (retries, replacement nesting, revoke by stamp)
    TASKS + "test_tasks::test_retry_switches_from_kwargs_to_args",
    TASKS + "test_tasks::test_revoke_by_stamped_headers_no_match",
    TASKS + "test_task_replacement::test_replaced_task_nesting_increments",
]
