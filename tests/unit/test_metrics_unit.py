"""TaskMetrics: what a scrape reports for a given event stream (no broker, no HTTP)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from tqctl.metrics.tasks import TaskMetrics


def _metrics() -> tuple[TaskMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return TaskMetrics(registry), registry


def ev(etype: str, uuid: str, ts: float, **fields: object) -> dict[str, object]:
    return {"type": etype, "uuid": uuid, "timestamp": ts, "hostname": "w1@h", **fields}


def test_counts_each_event_once_with_the_name_from_received() -> None:
    m, reg = _metrics()
    for event in (
        ev("task-received", "a", 10.0, name="t.add"),
        ev("task-started", "a", 10.5),
        ev("task-succeeded", "a", 11.0, runtime=0.5),
        ev("task-received", "b", 10.0, name="t.fail"),
        ev("task-started", "b", 10.0),
        ev("task-failed", "b", 12.0, exception="ValueError()"),
    ):
        m.apply(event)
    assert reg.get_sample_value("tqctl_tasks_total", {"name": "t.add", "state": "succeeded"}) == 1
    assert reg.get_sample_value("tqctl_tasks_total", {"name": "t.fail", "state": "failed"}) == 1
    assert reg.get_sample_value("tqctl_task_runtime_seconds_sum", {"name": "t.add"}) == 0.5
    assert reg.get_sample_value("tqctl_task_runtime_seconds_sum", {"name": "t.fail"}) == 2.0  # failed - started


def test_wait_is_measured_whichever_of_sent_and_started_arrives_last() -> None:
    m, reg = _metrics()
    m.apply(ev("task-sent", "a", 100.0, name="t.x"))
    m.apply(ev("task-started", "a", 103.0))
    m.apply(ev("task-received", "b", 200.0, name="t.x"))
    m.apply(ev("task-started", "b", 201.0))
    m.apply(ev("task-sent", "b", 199.0, name="t.x"))  # the client's batch came late
    assert reg.get_sample_value("tqctl_task_wait_seconds_count", {"name": "t.x"}) == 2
    assert reg.get_sample_value("tqctl_task_wait_seconds_sum", {"name": "t.x"}) == 5.0


def test_a_quick_task_done_before_its_late_task_sent_still_has_its_wait() -> None:
    """The client's task-sent comes in a batch, often after a quick task has already succeeded:
    the wait was dropped with the finished task (0 waits for 5 starts on a live exporter)."""
    m, reg = _metrics()
    m.apply(ev("task-received", "c", 300.0, name="t.q"))
    m.apply(ev("task-started", "c", 300.5))
    m.apply(ev("task-succeeded", "c", 300.6, runtime=0.1))
    m.apply(ev("task-sent", "c", 299.5, name="t.q"))  # the batch, after the task is done
    assert reg.get_sample_value("tqctl_task_wait_seconds_count", {"name": "t.q"}) == 1
    assert reg.get_sample_value("tqctl_task_wait_seconds_sum", {"name": "t.q"}) == 1.0


def test_a_task_sent_stamped_after_the_start_it_announces_still_measures_a_wait() -> None:
    """Celery's client stamps task-sent after its publish returns: a worker on the other CPU may start
    the task (and its events arrive) first. That wait was dropped; a retry's own task-sent, stamped
    after the attempt before it started, is still not that attempt's wait."""
    m, reg = _metrics()
    m.apply(ev("task-received", "d", 400.0, name="t.r", retries=0))
    m.apply(ev("task-started", "d", 400.001))
    m.apply(ev("task-failed", "d", 400.002, exception="RuntimeError()"))
    m.apply(ev("task-sent", "d", 400.0015, name="t.r", retries=0))  # stamped after the start
    assert reg.get_sample_value("tqctl_task_wait_seconds_count", {"name": "t.r"}) == 1
    assert reg.get_sample_value("tqctl_task_wait_seconds_sum", {"name": "t.r"}) == 0.0

    m.apply(ev("task-received", "e", 500.0, name="t.r", retries=0))
    m.apply(ev("task-started", "e", 500.5))
    m.apply(ev("task-sent", "e", 501.0, name="t.r", retries=1))  # the retry's, not this run's
    assert reg.get_sample_value("tqctl_task_wait_seconds_count", {"name": "t.r"}) == 1


def test_sent_at_from_the_message_and_odd_events() -> None:
    m, reg = _metrics()
    m.note_sent("a", 50.0)
    m.apply(ev("task-received", "a", 51.0, name="t.y"))
    m.apply(ev("task-started", "a", 52.5))
    m.apply(ev("task-succeeded", "zzz", 53.0, runtime="fast"))  # never received here, odd runtime
    m.apply({"type": "task-started"})  # no uuid
    m.apply({"nonsense": True})
    assert reg.get_sample_value("tqctl_task_wait_seconds_sum", {"name": "t.y"}) == 2.5
    assert reg.get_sample_value("tqctl_tasks_total", {"name": "unknown", "state": "succeeded"}) == 1
    assert reg.get_sample_value("tqctl_task_runtime_seconds_count", {"name": "unknown"}) is None
