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
_TASKS = "t/integration/test_tasks.py::"
_INSPECT = "t/integration/test_inspect.py::test_Inspect::"
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
    # -- test_tasks.py: the 14 that fail with a Celery worker too, each read one by one ----------------
    **{
        _TASKS + name: (
            ALL,
            _IN_PROCESS + "it reads the worker's state (worker_state.successful_requests) in the test process",
        )
        for name in (
            "test_tasks::test_send_task_without_ignore_result_stores_result",
            "test_tasks::test_send_task_without_ignore_result_uses_task_ignore_result",
            "test_task_redis_result_backend::test_retry_preserves_ignore_result_false",
            "test_task_redis_result_backend::test_retry_preserves_ignore_result_true",
        )
    },
    _TASKS + "test_tasks::test_task_sent_event_respects_publish_retry_limit": (
        ENGINE_CLIENT,
        "it patches kombu's Producer channel (app.connection_for_write, app.amqp.Producer) and reads "
        "Celery's event dispatcher's outbound buffer: client internals our client, which does not "
        "use kombu, does not have",
    ),
    _TASKS + "test_tasks::test_retry": (
        ALL,
        _IN_PROCESS + "its task counts attempts in an attribute of the task object, one per process: with a "
        "prefork pool of 2 the retries land in both processes and the count never reaches 3",
    ),
    _TASKS + "test_tasks::test_revoked_by_headers_simple_canvas": (
        ALL,
        _IN_PROCESS + "it clears the worker's revoked stamps (worker_state.revoked_stamps) in the test process "
        "between rounds; the worker keeps them, so the next round's task is revoked too",
    ),
    _TASKS + "test_tasks::test_revoked_by_headers_complex_canvas": (
        ALL,
        _IN_PROCESS + "it clears the worker's revoked stamps (worker_state.revoked_stamps) in the test process",
    ),
    **{
        _TASKS + f"test_trace_log_arguments::{name}": (
            ALL,
            _IN_PROCESS + "it captures the worker's log records (celery.app.trace) in the test process",
        )
        for name in ("test_task_success", "test_task_failed")
    },
    **{
        _TASKS + f"test_task_replacement::{name}": (
            ALL,
            _IN_PROCESS + "a task_received handler connected in the test process never fires",
        )
        for name in (
            "test_replaced_task_nesting_level_0",
            "test_replaced_task_nesting_level_1",
            "test_replaced_task_nesting_chain",
        )
    },
    _TASKS + "test_signal_bound_method_receivers": (
        ALL,
        _IN_PROCESS + "task_received receivers connected in the test process never fire",
    ),
    # -- test_inspect.py ---------------------------------------------------------------------------
    _INSPECT + "test_stats": (
        ALL,
        _IN_PROCESS + "it expects the in-process worker's concurrency 1 and the test process's own pid",
    ),
    _INSPECT + "test_conf": (
        ALL,
        _IN_PROCESS + "it expects the test app's own settings (worker_log_color...) in the worker's reply",
    ),
    _INSPECT + "test_hello_stamps_received_revoked_ids_locally": (
        ALL,
        _IN_PROCESS + "it reads the worker's revoked set (worker_state.revoked) in the test process",
    ),
    _INSPECT + "test_scheduled": (
        OURS,
        "a deliberate difference (README): our worker holds no ETA task; it waits in the broker's delayed "
        "set until due, for whichever worker takes it then, so `inspect scheduled` of a worker is empty "
        "(tqctl inspect scheduled and the console read the delayed set)",
    ),
    # -- other files: Celery internals that our client (mode b) does not have -----------------------
    "t/integration/test_connection_recovery.py": (
        frozenset({"b"}),
        "it drives Celery's worker consumer (celery.worker.consumer.Consumer) over a kombu Connection "
        "in the test process and bounds kombu's socket reads (bound_open_broker_sockets): worker and "
        "kombu internals; our worker does not use kombu",
    ),
    "t/integration/test_request_backend_down.py": (
        frozenset({"b"}),
        "it builds Celery's worker-side Request (celery.worker.request.Request) from a mocked kombu "
        "Message in the test process and calls its on_failure: a worker internal, not client API",
    ),
    "t/integration/test_events_state_memory_leak.py": (
        frozenset({"b"}),
        "it runs the event pipeline over kombu's in-memory transport (broker memory://, "
        "app.connection_for_write(), declaring a queue on a kombu channel); our client has no "
        "in-memory broker and our events travel on Redis pub/sub",
    ),
    **{
        f"t/integration/test_logfile_format.py::test_escaped_logfile_reaches_logging[True-{case}]": (
            frozenset({"b"}),
            "it builds the command line of `celery multi` (celery.apps.multi.Node); tqctl has no multi "
            "command (the same escaping without multi passes)",
        )
        for case in ("%%%%n-%n.log-%n-worker.log", "50%%%%d.log-50%d.log", "%%%%x.log-%x.log", "%%%%i-%i.log-%i-0.log")
    },
    # -- other files -------------------------------------------------------------------------------
    "t/integration/test_backend.py": (ALL, "Azure Block Blob backend only (needs azure and an Azure account)"),
    "t/integration/test_database_backend.py": (
        ALL,
        "Celery's SQLAlchemy result backend (a client-side backend we do not have; needs sqlalchemy)",
    ),
    "t/integration/test_security.py": (
        ALL,
        _IN_PROCESS + "it sets up message signing (the auth serializer, x509 certificates) on the test's "
        "app; the worker never gets those settings",
    ),
    "t/integration/test_backend_leak_in_fixture_teardown.py": (
        ALL,
        "it starts Celery's own in-process test worker (celery.contrib.testing.worker.start_worker)",
    ),
    **{
        f"t/integration/test_worker.py::{name}": (
            ALL,
            _IN_PROCESS + "it runs Celery's DjangoFixup with Django in the test process",
        )
        for name in (
            "test_django_fixup_direct_worker",
            "test_django_fixup_installs_django_task_for_celery_subclass",
            "test_django_fixup_signals_only_handled_by_own_app",
        )
    },
}


def reason_for(nodeid: str, mode: str) -> str | None:
    for prefix, (modes, reason) in SKIPS.items():
        if mode in modes and (nodeid == prefix or nodeid.startswith((prefix + "::", prefix + "["))):
            return reason
    return None
