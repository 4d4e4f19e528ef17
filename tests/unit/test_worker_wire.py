"""The prefork pipe's named structures stay in step with the classes they rebuild."""

from __future__ import annotations

import pickle

from engine.request import Request
from engine.trace import Outcome
from engine.worker.wire import (
    REQUEST_ORDER,
    Finished,
    RequestFields,
    RunOrder,
    Started,
    order_from_wire,
    order_to_wire,
    report_from_wire,
    request_of,
)


def test_request_fields_follow_request_order() -> None:
    # ``RequestFields.build`` passes its fields by position: a field added to ``Request`` in the
    # middle would otherwise shift every later one into the wrong attribute.
    assert RequestFields._fields == REQUEST_ORDER


def test_request_round_trips_through_the_pipe() -> None:
    sent = RequestFields(
        id="t1",
        name="add",
        args=[1, 2],
        kwargs={"x": 3},
        retries=2,
        hostname="w1",
        delivery_info={"routing_key": "celery"},
        root_id="r",
        parent_id="p",
        group="g",
        group_index=4,
        eta=None,
        expires=None,
        message_headers={"custom": "yes"},
        callbacks=None,
        errbacks=None,
        chain=None,
        chord=None,
        origin="gen1@host",
        ignore_result=True,
        timelimit=(10.0, 5.0),
        is_eager=False,
        called_directly=False,
        properties={"priority": 0},
    )
    order = RunOrder(key=3, name="add", soft_limit=None, request=sent, epoch=-1)
    back = order_from_wire(pickle.loads(pickle.dumps(order_to_wire(order))))
    assert (back.key, back.name, back.epoch) == (3, "add", -1)
    request = RequestFields.build(back.request)
    assert isinstance(request, Request)
    assert (request.id, request.retries, request.group_index, request.timelimit) == ("t1", 2, 4, (10.0, 5.0))
    assert request.custom == "yes" and request.origin == "gen1@host" and request.ignore_result


def test_outcome_round_trips_through_the_pipe() -> None:
    outcome = Outcome(state="RETRY", runtime=0.5, exception_repr="Retry()", requeue=False, retry_when=3.0)
    back = report_from_wire(pickle.loads(pickle.dumps(tuple(Finished.of(7, outcome)))))
    assert isinstance(back, Finished) and back.key == 7
    assert back.outcome() == Outcome(state="RETRY", runtime=0.5, exception_repr="Retry()", retry_when=3.0)


def test_a_start_report_is_told_from_a_finish() -> None:
    started = Started(key=1, pid=42, at=1.5, wall=1_700_000_000.5, ran=True, fenced=False)
    assert report_from_wire(pickle.loads(pickle.dumps(tuple(started)))) == started


def test_a_child_builds_the_same_request_from_the_message_bytes() -> None:
    # The parent sends the message's own bytes; the child decodes them again and must build the
    # request the parent would have sent ready-made (task's ignore_result, the limits in force).
    from engine.protocol import task as protocol
    from engine.serialization import accepted_types
    from engine.worker.child import _request

    accepted = accepted_types(["json"])
    embed = {"callbacks": [{"task": "next", "args": [], "kwargs": {}, "options": {}}]}
    _, raw = protocol.build("add", [1, 2], {"x": 3}, retries=2, group="g", group_index=1, embed=embed)
    message = protocol.decode(raw, accepted)
    ready = request_of(message, "w1", True, 10.0, 5.0)
    order = RunOrder(key=1, name="add", soft_limit=5.0, request=raw, epoch=-1, hard_limit=10.0, ignore_result=True)
    back = order_from_wire(pickle.loads(pickle.dumps(order_to_wire(order))))
    built = _request(back, "w1", accepted)
    assert vars(built) == vars(RequestFields.build(ready))
    assert built.ignore_result and built.timelimit == (10.0, 5.0) and built.callbacks == embed["callbacks"]
