"""ClusterState: real Celery 5.7/5.4 event vectors plus synthetic sequences, with a fake clock."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from engine import states
from engine.events.rates import CounterRate, KeyedCounters, WindowCounter
from engine.events.state import ClusterState
from engine.protocol import events as wire

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
T0 = 1_795_482_451.0


def vector(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text())


def wire_events(name: str) -> list[dict[str, Any]]:
    """The vector's raw kombu envelope, decoded the way the receiver does it."""
    raw = vector(name)["raw"]
    return wire.decode(json.dumps(raw).encode())


def ev(kind: str, host: str = "w1@vm", ts: float = T0, **fields: Any) -> dict[str, Any]:
    return {"hostname": host, "utcoffset": 0.0, "pid": 1, "clock": 1, "timestamp": ts, "type": kind, **fields}


def heartbeat(host: str = "w1@vm", ts: float = T0, kind: str = "worker-heartbeat", **fields: Any) -> dict[str, Any]:
    base = {
        "freq": 2.0,
        "active": 0,
        "processed": 0,
        "loadavg": [0.1, 0.2, 0.3],
        "sw_ident": "py-celery",
        "sw_ver": "5.7.0",
        "sw_sys": "Linux",
    }
    return ev(kind, host, ts, **(base | fields))


# -- real vectors -----------------------------------------------------------------------------


RAW_VECTORS = sorted(p.name for p in VECTORS.glob("event-*.json") if "raw" in json.loads(p.read_text()))


def test_vectors_are_present() -> None:
    assert len(RAW_VECTORS) >= 12, RAW_VECTORS


@pytest.mark.parametrize("name", RAW_VECTORS)
def test_every_raw_vector_applies_without_drops(name: str) -> None:
    decoded = wire_events(name)
    body = vector(name)["decoded_body"]
    body = body if isinstance(body, list) else [body]
    # the vectors' decoded_body redacts traceback paths; everything else is byte-for-byte the wire
    assert [{k: v for k, v in e.items() if k != "traceback"} for e in decoded] == [
        {k: v for k, v in e.items() if k != "traceback"} for e in body
    ]
    state = ClusterState()
    state.apply_many(decoded)
    assert state.stats()["events_applied"] == len(decoded)
    assert state.stats()["events_dropped"] == 0
    json.dumps(state.snapshot())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("event-task-sent.json", states.PENDING),
        ("event-task-received.json", states.RECEIVED),
        ("event-task-failed.json", states.FAILURE),
        ("event-task-retried.json", states.RETRY),
        ("event-task-revoked.json", states.REVOKED),
    ],
)
def test_single_event_vector_sets_state(name: str, expected: str) -> None:
    event = vector(name)["event"]
    state = ClusterState()
    state.apply_many(wire_events(name))
    task = state.task(event["uuid"])
    assert task is not None and task.state == expected
    assert task.timeline[-1][0] == event["type"]


def test_batched_started_and_succeeded_vectors() -> None:
    state = ClusterState()
    state.apply_many(wire_events("event-task-started.json"))
    started = [e for e in wire_events("event-task-started.json") if e["type"] == "task-started"]
    assert {state.task(e["uuid"]).state for e in started} == {states.STARTED}  # type: ignore[union-attr]
    state.apply_many(wire_events("event-task-succeeded.json"))
    done = state.task("0c543689-0972-482b-93ee-057b2ee3dba8")
    assert done is not None and done.state == states.SUCCESS and done.result == "18"
    assert done.runtime == pytest.approx(0.02127, rel=1e-3)
    assert done.started is not None and done.worker == "w1@vm"


def test_task_sent_comes_from_a_client_not_a_worker() -> None:
    state = ClusterState()
    state.apply_many(wire_events("event-task-sent.json"))
    task = state.task("7a8c01b7-97dd-4e53-94cc-b87f02c78aad")
    assert task is not None
    assert (task.state, task.worker, task.client) == (states.PENDING, None, "gen11956@vm")
    assert (task.queue, task.routing_key, task.args, task.kwargs) == ("celery", "celery", "(3, 3)", "{}")
    assert task.parent_id == "8b223765-e894-4e6e-8dc5-c647dcc9444d"
    assert state.workers == {}
    assert [t.uuid for t in state.children(task.parent_id)] == [task.uuid]


def test_failed_then_rejected_keeps_failure_and_records_the_rejection() -> None:
    state = ClusterState()
    state.apply_many(wire_events("event-task-rejected.json"))
    task = state.task("ada60325-83ea-4fad-b60f-705c66a2a651")
    assert task is not None and task.state == states.FAILURE
    assert task.requeue is False and task.rejected is not None
    assert "Reject" in (task.traceback or "")
    assert [t[0] for t in task.timeline] == ["task-failed", "task-rejected"]


def test_failed_vector_fields() -> None:
    state = ClusterState()
    state.apply_many(wire_events("event-task-failed.json"))
    task = state.failures()[0]
    assert task.exception == "ValueError('boom')"
    assert task.traceback is not None and task.traceback.endswith("ValueError: boom\n")
    assert state.workers["w1@vm"].failed == 1


def test_revoked_variants() -> None:
    state = ClusterState()
    variants = vector("event-task-revoked-variants.json")["events"]
    state.apply_many(variants)
    for event in variants:
        task = state.task(event["uuid"])
        assert task is not None and task.state == states.REVOKED
        assert (task.expired, task.terminated, task.signum) == (event["expired"], event["terminated"], event["signum"])
    signals = sorted(t.signum for t in state.tasks(state=states.REVOKED) if t.terminated)
    assert signals == [9, 15, 15, 15]


def test_receiver_view_full_lifecycle_and_stream_health() -> None:
    view = vector("event-receiver-view.json")["events"]
    state = ClusterState()
    state.apply_many(view)
    task = state.task("197dbe4e-1c9b-4a1a-ae08-d486e5fd3e46")
    assert task is not None
    assert (task.state, task.name, task.args, task.result) == (states.SUCCESS, "tqproto.add", "(20, 22)", "42")
    assert (task.worker, task.client) == ("w1@vm", "gen25644@vm")
    assert [t[0] for t in task.timeline][:4] == ["task-sent", "task-received", "task-started", "task-succeeded"]
    assert task.sent < task.received < task.started < task.succeeded  # type: ignore[operator]
    now = max(e["local_received"] for e in view)
    assert "w2@vm" in state.stream_health(now)["workers_without_task_events"]
    assert "w1@vm" not in state.stream_health(now)["workers_without_task_events"]
    assert "gen25644@vm" not in state.workers


def test_worker_vectors_celery_54_and_57() -> None:
    state = ClusterState()
    state.apply_many(wire_events("event-worker-online-celery-5.4.json"))
    state.apply_many(wire_events("event-worker-online.json"))
    old, new = state.workers["w3old@vm"], state.workers["w1@vm"]
    assert vector("event-worker-online-celery-5.4.json")["decoded_body"]["utcoffset"] == 0  # an int on the wire
    assert isinstance(old.utcoffset, float) and isinstance(new.utcoffset, float)
    assert (old.sw_ver, new.sw_ver, new.freq, new.loadavg) == ("5.4.0", "5.7.0", 2.0, [1.8, 0.72, 0.27])


def test_ondemand_heartbeat_keeps_counters_and_widens_window() -> None:
    state = ClusterState()
    state.apply(heartbeat(processed=15, active=2), now=T0)
    ondemand = wire_events("event-worker-heartbeat-ondemand.json")[0]
    state.apply(ondemand, now=T0 + 1)
    worker = state.workers["w1@vm"]
    assert (worker.freq, worker.processed, worker.active) == (5.0, 15, 2)
    assert worker.alive(T0 + 1 + 10) and not worker.alive(T0 + 1 + 10.01)


def test_our_own_events_with_py_tqctl() -> None:
    state = ClusterState()
    online = wire.make("worker-online", "tq1@host", 1, timestamp=T0, **wire.worker_fields(2.0, 0, 0))
    key, raw = wire.encode(online, "tq1@host")
    batch = [
        wire.make(
            "task-received", "tq1@host", 2, timestamp=T0 + 1, uuid="u1", name="shop.add", args="(1, 2)", kwargs="{}"
        ),
        wire.make("task-succeeded", "tq1@host", 3, timestamp=T0 + 2, uuid="u1", result="3", runtime=0.1),
    ]
    key2, raw2 = wire.encode(batch, "tq1@host")
    assert (key, key2) == ("worker.online", "task.multi")
    state.apply_many(wire.decode(raw) + wire.decode(raw2))
    assert state.workers["tq1@host"].sw_ident == "py-tqctl"
    assert state.task("u1").state == states.SUCCESS  # type: ignore[union-attr]


# -- merge rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("task-sent", states.PENDING),
        ("task-received", states.RECEIVED),
        ("task-started", states.STARTED),
        ("task-succeeded", states.SUCCESS),
        ("task-failed", states.FAILURE),
        ("task-retried", states.RETRY),
        ("task-revoked", states.REVOKED),
        ("task-rejected", states.REJECTED),
        ("task-progress", "PROGRESS"),
    ],
)
def test_each_type_maps_to_celery_state(kind: str, expected: str) -> None:
    state = ClusterState()
    state.apply(ev(kind, uuid="u1"))
    assert state.task("u1").state == expected  # type: ignore[union-attr]


def test_late_started_fills_fields_but_never_moves_state_back() -> None:
    state = ClusterState()
    state.apply(ev("task-succeeded", ts=T0 + 3, uuid="u1", result="7", runtime=0.5))
    state.apply(ev("task-started", ts=T0 + 2, uuid="u1"))
    state.apply(ev("task-received", ts=T0 + 1, uuid="u1", name="shop.add", args="(3, 4)", kwargs="{}", retries=0))
    task = state.task("u1")
    assert task is not None
    assert task.state == states.SUCCESS and task.timestamp == T0 + 3
    assert (task.name, task.args, task.started, task.received, task.worker) == (
        "shop.add",
        "(3, 4)",
        T0 + 2,
        T0 + 1,
        "w1@vm",
    )
    assert [t[0] for t in task.timeline] == ["task-received", "task-started", "task-succeeded"]  # sorted by time


def test_retry_starts_a_new_attempt_but_a_stale_retry_does_not_reopen() -> None:
    state = ClusterState()
    state.apply_many(
        [
            ev("task-received", ts=T0, uuid="u1", name="n", retries=0),
            ev("task-started", ts=T0 + 1, uuid="u1"),
            ev("task-retried", ts=T0 + 2, uuid="u1", exception="KeyError('x')"),
        ]
    )
    assert state.task("u1").state == states.RETRY  # type: ignore[union-attr]
    state.apply(ev("task-received", "w2@vm", ts=T0 + 3, uuid="u1", name="n", retries=1))
    task = state.task("u1")
    assert task is not None and (task.state, task.retries, task.worker) == (states.RECEIVED, 1, "w2@vm")
    state.apply(ev("task-started", "w1@vm", ts=T0 + 1.5, uuid="u1"))  # late, from the first attempt
    assert task.state == states.RECEIVED
    state.apply(ev("task-succeeded", "w2@vm", ts=T0 + 5, uuid="u1", result="1"))
    state.apply(ev("task-retried", ts=T0 + 2, uuid="u1"))  # duplicate/late retry after success
    assert task.state == states.SUCCESS


def test_equal_precedence_is_decided_by_time() -> None:
    state = ClusterState()
    state.apply(ev("task-failed", ts=T0 + 5, uuid="u1", exception="E()"))
    state.apply(ev("task-revoked", ts=T0 + 4, uuid="u1", terminated=True, signum=15, expired=False))
    task = state.task("u1")
    assert task is not None and task.state == states.FAILURE and task.terminated is True


def test_requeued_rejection_allows_redelivery() -> None:
    state = ClusterState()
    state.apply(ev("task-rejected", ts=T0, uuid="u1", requeue=True))
    state.apply(ev("task-received", ts=T0 + 1, uuid="u1", name="n"))
    assert state.task("u1").state == states.RECEIVED  # type: ignore[union-attr]


def test_bad_input_is_counted_never_raised() -> None:
    state = ClusterState()
    for bad in [
        {},
        {"type": 5},
        {"type": "task-started"},
        {"type": "worker-heartbeat"},
        {"type": "other"},
        ev("task-started", uuid=""),
        "nope",
        ev("worker-heartbeat", freq="x", pid="y", loadavg=3),
    ]:
        state.apply(bad)  # type: ignore[arg-type]
    stats = state.stats()
    assert stats["events_dropped"] == 7 and stats["events_applied"] == 1
    assert state.workers["w1@vm"].freq == 2.0 and state.workers["w1@vm"].pid is None


def test_timeline_is_bounded() -> None:
    state = ClusterState()
    for i in range(40):
        state.apply(ev("task-retried" if i % 2 else "task-received", ts=T0 + i, uuid="u1"))
    assert len(state.task("u1").timeline) == 12  # type: ignore[union-attr]


# -- workers --------------------------------------------------------------------------------------


def test_liveness_follows_the_heartbeat_window() -> None:
    state = ClusterState(heartbeat_window=2.0)
    state.apply(heartbeat("w1@vm", ts=T0), now=T0 + 0.01)
    state.apply(heartbeat("w2@vm", ts=T0), now=T0 + 3)
    assert [w.hostname for w in state.workers_alive(T0 + 4)] == ["w1@vm", "w2@vm"]
    assert [w.hostname for w in state.workers_alive(T0 + 4.02)] == ["w2@vm"]  # freq 2 × window 2 = 4 s
    assert state.workers_alive(T0 + 7.01) == []
    state.apply(ev("task-started", "w1@vm", ts=T0 + 8, uuid="u1"), now=T0 + 8)  # any event counts
    assert [w.hostname for w in state.workers_alive(T0 + 11)] == ["w1@vm"]


def test_liveness_uses_receive_time_not_sender_clock() -> None:
    state = ClusterState()
    state.apply(heartbeat(ts=T0 - 3600), now=T0)  # sender clock one hour behind
    worker = state.workers["w1@vm"]
    assert worker.alive(T0 + 3) and worker.drift == pytest.approx(3600)
    assert state.stream_health(T0)["max_drift_seconds"] == pytest.approx(3600)


def test_offline_and_back() -> None:
    state = ClusterState()
    state.apply_many(wire_events("event-worker-online.json"), now=T0)
    offline = wire_events("event-worker-offline.json")
    state.apply_many(offline, now=T0 + 1)
    worker = state.workers["w1@vm"]
    assert worker.offline and not worker.alive(T0 + 1.5)
    assert (worker.processed, worker.active) == (28, 1)
    state.apply(heartbeat(), now=T0 + 30)
    assert worker.alive(T0 + 31) and not worker.offline


def test_worker_task_counters_and_table_bound() -> None:
    state = ClusterState(max_workers=2)
    state.apply_many(
        [
            ev("task-succeeded", uuid="a"),
            ev("task-failed", uuid="b"),
            ev("task-retried", uuid="c"),
            ev("task-succeeded", uuid="d"),
        ],
        now=T0,
    )
    worker = state.workers["w1@vm"]
    assert (worker.succeeded, worker.failed, worker.retried, worker.task_events_seen) == (2, 1, 1, True)
    state.apply(heartbeat("w2@vm"), now=T0 + 1)
    state.apply(ev("worker-offline", "w2@vm"), now=T0 + 2)
    state.apply(heartbeat("w3@vm"), now=T0 + 3)
    assert sorted(state.workers) == ["w1@vm", "w3@vm"]  # the offline one made room


# -- memory bounds ----------------------------------------------------------------------------------


def test_eviction_keeps_failures_until_they_alone_exceed_the_cap() -> None:
    state = ClusterState(max_tasks=10)
    for i in range(5):
        state.apply(ev("task-failed", ts=T0 + i, uuid=f"f{i}", exception="E()"))
    for i in range(20):
        state.apply(ev("task-succeeded", ts=T0 + 10 + i, uuid=f"s{i}"))
    stats = state.stats()
    assert (stats["tasks"], stats["failures"], stats["evicted"]) == (10, 5, 15)
    assert sorted(t.uuid for t in state.tasks(state=states.SUCCESS)) == sorted(f"s{i}" for i in range(15, 20))
    for i in range(5, 15):
        state.apply(ev("task-failed", ts=T0 + 40 + i, uuid=f"f{i}", exception="E()"))
    assert [t.uuid for t in state.failures()] == [f"f{i}" for i in range(14, 4, -1)]
    assert state.stats()["tasks"] == 10


def test_task_that_fails_later_moves_to_the_kept_side() -> None:
    state = ClusterState(max_tasks=3)
    state.apply(ev("task-received", ts=T0, uuid="x", name="n"))
    state.apply_many([ev("task-received", ts=T0 + 1, uuid=u) for u in ("a", "b")])
    state.apply(ev("task-failed", ts=T0 + 2, uuid="x", exception="E()"))
    state.apply_many([ev("task-received", ts=T0 + 3, uuid=u) for u in ("c", "d")])
    assert state.task("x") is not None and state.task("a") is None and state.task("b") is None


def test_byte_cap_counts_string_lengths_and_still_keeps_failures() -> None:
    state = ClusterState(max_bytes=50_000)
    for i in range(10):
        state.apply(ev("task-failed", ts=T0 + i, uuid=f"f{i}", exception="E()", traceback="x" * 2_000))
    for i in range(200):
        state.apply(ev("task-succeeded", ts=T0 + 20 + i, uuid=f"s{i}", result="r" * 500))
    stats = state.stats()
    assert stats["approx_bytes"] <= 50_000
    assert stats["failures"] == 10 and 0 < stats["tasks"] - 10 < 200
    before = stats["approx_bytes"]
    state.apply(ev("task-failed", ts=T0 + 300, uuid="big", traceback="t" * 40_000))
    assert state.task("big") is not None and state.stats()["approx_bytes"] <= 50_000 + 1_000
    assert state.stats()["approx_bytes"] != before
    assert state.stats()["approx_bytes"] == sum(t.size for t in state.tasks())


def test_size_estimate_follows_updates_and_late_fills() -> None:
    state = ClusterState()
    state.apply(ev("task-succeeded", ts=T0 + 2, uuid="u1", result="r" * 100))
    small = state.task("u1").size  # type: ignore[union-attr]
    state.apply(ev("task-received", ts=T0 + 1, uuid="u1", name="n", args="a" * 1_000, kwargs="{}"))
    task = state.task("u1")
    assert task is not None and task.size >= small + 1_000
    assert state.stats()["approx_bytes"] == task.size


# -- rates and stream health ---------------------------------------------------------------------------


def test_rates_over_the_sliding_window() -> None:
    state = ClusterState(rate_window=10.0)
    for i in range(20):  # 20 successes of "a" and 5 failures of "b" in 10 s
        state.apply_many(
            [
                ev("task-received", ts=T0 + i / 2, uuid=f"a{i}", name="a"),
                ev("task-succeeded", ts=T0 + i / 2, uuid=f"a{i}"),
            ],
            now=T0 + i / 2,
        )
    for i in range(5):
        state.apply_many(
            [
                ev("task-received", ts=T0 + 2 * i, uuid=f"b{i}", name="b"),
                ev("task-failed", ts=T0 + 2 * i, uuid=f"b{i}"),
            ],
            now=T0 + 2 * i,
        )
    rates = state.rates(T0 + 10)
    assert rates["succeeded_per_second"] == pytest.approx(2.0)
    assert rates["failed_per_second"] == pytest.approx(0.5)
    assert rates["events_per_second"] == pytest.approx(5.0)
    assert rates["succeeded_per_second_by_name"] == {"a": pytest.approx(2.0)}
    assert rates["failed_per_second_by_name"] == {"b": pytest.approx(0.5)}
    later = state.rates(T0 + 15)  # only the last 5 s of the data remain in the window
    assert later["succeeded_per_second"] == pytest.approx(1.0)
    assert state.rates(T0 + 30)["events_per_second"] == 0.0
    assert state.stats(T0 + 10)["events_per_second"] == pytest.approx(5.0)
    assert state.rates(T0 + 5)["succeeded_per_second"] == pytest.approx(12 / 5)  # younger than the window


def test_per_worker_processed_rate_from_heartbeats() -> None:
    state = ClusterState(rate_window=10.0)
    for i in range(6):
        state.apply(heartbeat(ts=T0 + 2 * i, processed=30 * i), now=T0 + 2 * i)
    assert state.rates(T0 + 10)["processed_per_second_by_worker"]["w1@vm"] == pytest.approx(15.0)
    state.apply(heartbeat(ts=T0 + 12, processed=10), now=T0 + 12)  # restarted: counts from zero
    assert state.workers["w1@vm"].processed_rate.rate(T0 + 12) == pytest.approx((30 * 4 + 10) / 10)
    assert state.rates(T0 + 40)["processed_per_second_by_worker"]["w1@vm"] == 0.0


def test_stream_health_flags_workers_without_task_events() -> None:
    state = ClusterState(rate_window=10.0)
    for i in range(4):
        now = T0 + 2 * i
        state.apply(heartbeat("quiet@vm", ts=now, processed=10 * i), now=now)  # -E off but working
        state.apply(heartbeat("idle@vm", ts=now, processed=0), now=now)
        state.apply(heartbeat("loud@vm", ts=now, processed=i), now=now)
        state.apply(ev("task-succeeded", "loud@vm", ts=now, uuid=f"u{i}"), now=now)
    health = state.stream_health(T0 + 6)
    assert health["workers_without_task_events"] == ["idle@vm", "quiet@vm"]
    assert health["events_per_second"] > 0
    state.apply(ev("task-received", "quiet@vm", ts=T0 + 6, uuid="q"), now=T0 + 6)
    assert state.stream_health(T0 + 6)["workers_without_task_events"] == ["idle@vm"]
    for i in range(4, 12):  # events switched off again while it keeps processing
        state.apply(heartbeat("quiet@vm", ts=T0 + 2 * i, processed=10 * i), now=T0 + 2 * i)
    assert "quiet@vm" in state.stream_health(T0 + 22)["workers_without_task_events"]


def test_window_counter_late_events_and_counter_rate_edges() -> None:
    counter = WindowCounter(10.0)
    for t in (100.0, 105.0, 103.0, 103.5, 80.0):  # 80 is outside the window: ignored
        counter.add(t)
    assert counter.count(105.5) == 4 and counter.rate(105.5) == pytest.approx(4 / 5.5, rel=0.2)
    assert counter.idle(200.0) and not counter.idle(105.0)
    keyed = KeyedCounters(10.0, max_keys=2)
    for i, key in enumerate("abc"):
        keyed.add(key, 100.0 + i)
    assert keyed.keys() == ["b", "c"]  # full and nothing idle: the oldest key goes
    keyed.add("d", 150.0)
    assert keyed.keys() == ["d"]  # idle counters go first
    rate = CounterRate(10.0)
    rate.add(100.0, 5)
    assert rate.rate(100.0) == 0.0  # one sample is not a rate
    rate.add(99.0, 1)  # stale sample dropped
    rate.add(104.0, 25)
    assert rate.rate(104.0) == pytest.approx(5.0)


# -- queries and snapshot ------------------------------------------------------------------------------


@pytest.fixture
def busy() -> ClusterState:
    state = ClusterState()
    state.apply(ev("task-received", "w1@vm", ts=T0, uuid="root", name="shop.order", args="(1,)", root_id="root"))
    state.apply(ev("task-succeeded", "w1@vm", ts=T0 + 1, uuid="root", result="'ok'"))
    for i in range(3):
        state.apply(
            ev(
                "task-received",
                "w2@vm",
                ts=T0 + 2 + i,
                uuid=f"child{i}",
                name="shop.mail",
                args=f"({i},)",
                root_id="root",
                parent_id="root",
            )
        )
    state.apply(ev("task-failed", "w2@vm", ts=T0 + 9, uuid="child1", exception="SMTPError('Mailbox FULL')"))
    return state


def test_queries(busy: ClusterState) -> None:
    assert [t.uuid for t in busy.tasks()] == ["child1", "child2", "child0", "root"]  # newest activity first
    assert [t.uuid for t in busy.tasks(limit=2)] == ["child1", "child2"]
    assert busy.tasks(limit=0) == []
    assert [t.uuid for t in busy.tasks(state=states.RECEIVED)] == ["child2", "child0"]
    assert [t.uuid for t in busy.tasks(name="shop.order")] == ["root"]
    assert [t.uuid for t in busy.tasks(worker="w2@vm", since=T0 + 4)] == ["child1", "child2"]
    assert [t.uuid for t in busy.tasks(text="mailbox full")] == ["child1"]
    assert [t.uuid for t in busy.tasks(text="SHOP.ORDER")] == ["root"]
    assert [t.uuid for t in busy.failures()] == ["child1"]
    assert [t.uuid for t in busy.children("root")] == ["child0", "child1", "child2"]
    assert busy.children("child0") == [] and busy.task("nope") is None


def test_children_index_follows_eviction() -> None:
    state = ClusterState(max_tasks=2)
    for i in range(4):
        state.apply(ev("task-received", ts=T0 + i, uuid=f"c{i}", parent_id="p"))
    assert [t.uuid for t in state.children("p")] == ["c2", "c3"]
    assert state._children == {"p": {"c2": None, "c3": None}}


def test_snapshot_is_plain_json_with_iso_times(busy: ClusterState) -> None:
    snap = busy.snapshot(now=T0 + 10)
    text = json.dumps(snap)
    assert json.loads(text) == snap
    assert set(snap) == {"generated_at", "stats", "stream_health", "rates", "workers", "tasks"}
    assert snap["generated_at"] == "2026-11-24T01:07:41+00:00"
    child = next(t for t in snap["tasks"] if t["uuid"] == "child1")
    assert child["state"] == "FAILURE" and child["failed"] == "2026-11-24T01:07:40+00:00"
    assert child["timeline"][0] == {
        "type": "task-received",
        "timestamp": "2026-11-24T01:07:34+00:00",
        "hostname": "w2@vm",
    }
    assert [w["hostname"] for w in snap["workers"]] == ["w1@vm", "w2@vm"]
    assert snap["workers"][0]["alive"] is False and snap["workers"][1]["last_heartbeat"] is None

    def keys(obj: Any) -> set[str]:
        if isinstance(obj, dict):
            return {k for k in obj if not ("@" in k or k.startswith("shop."))} | {
                x for v in obj.values() for x in keys(v)
            }
        if isinstance(obj, list):
            return {x for v in obj for x in keys(v)}
        return set()

    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", k) for k in keys(snap)), keys(snap)
    assert len(busy.snapshot(limit=1)["tasks"]) == 1
