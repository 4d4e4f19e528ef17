"""Call-time options merged into a signature, checked against the installed Celery 5.7.

Celery's rule (``Signature._merge``, used by ``clone``, ``apply`` and ``apply_async``):
options given at call time replace the signature's own, except ``group_id``,
``stamped_headers`` and every stamp the signature lists in its ``stamped_headers``, which
stay as the signature has them (a task put in a group must still count into that group; a
stamp cannot be rewritten by whoever sends it). ``apply``/``apply_async`` drop options
given as ``None`` first, and an immutable signature takes no call-time args nor kwargs.

Each test builds the same signature with our engine and with Celery and compares what a
user sees: the clone's options, or the options that reach the task's ``apply_async`` (the
message about to be sent). No broker is needed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import celery
import pytest

from engine import App, group
from engine.canvas import Signature

NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens there: these tests never connect

Build = Callable[[Any], Any]  # a task (ours or Celery's) -> the signature under test


def add(x: int, y: int = 0) -> int:
    return x + y


@pytest.fixture
def ours() -> Any:
    return App("unit-sigmerge", broker=NOWHERE, backend=NOWHERE).task(name="sm.add")(add)


@pytest.fixture
def theirs() -> Any:
    return celery.Celery("sm", set_as_current=False).task(name="sm.add")(add)


def plain(value: Any) -> Any:
    """Wire shape: signatures as dicts, tuples as lists, so both engines compare equal (Celery's
    group also hands its members a ``producer``: named by its type only)."""
    return json.loads(json.dumps(value, default=lambda o: type(o).__name__))


def captured(task: Any, monkeypatch: pytest.MonkeyPatch, method: str = "apply_async") -> list[dict[str, Any]]:
    """Record what a signature hands its task's ``apply_async``/``apply`` instead of sending it."""
    sent: list[dict[str, Any]] = []

    def record(args: Any = None, kwargs: Any = None, **options: Any) -> None:
        sent.append(plain({"args": list(args or ()), "kwargs": dict(kwargs or {}), "options": options}))

    monkeypatch.setattr(task, method, record)
    return sent


def stamped(task: Any) -> Any:
    sig = task.s(1)
    sig.stamp(foo="a")
    return sig


SIGNATURES: dict[str, Build] = {
    "in a group": lambda t: t.s(1).set(group_id="g1", group_index=0),
    "stamped": stamped,
    "stamped, in a group": lambda t: stamped(t).set(group_id="g1"),
    "with link and queue": lambda t: t.s(1).set(link=[t.si(9)], queue="q1"),
    "plain": lambda t: t.s(1),
}
CALL_OPTIONS: dict[str, dict[str, Any]] = {
    "another group": {"group_id": "g2", "group_index": 5},
    "another stamp value": {"foo": "b"},
    "other stamped headers": {"stamped_headers": ["bar"], "bar": 1},
    "a queue and a link": {"queue": "q2", "link": [{"task": "sm.add", "args": [8], "kwargs": {}, "options": {}}]},
}
CASES = [pytest.param(s, o, id=f"{s}+{o}") for s in SIGNATURES for o in CALL_OPTIONS]


@pytest.mark.parametrize(("sig_name", "opts_name"), CASES)
def test_clone_merges_options_as_celery(ours: Any, theirs: Any, sig_name: str, opts_name: str) -> None:
    build, options = SIGNATURES[sig_name], CALL_OPTIONS[opts_name]
    expected = plain(build(theirs).clone(**options).options)
    assert plain(build(ours).clone(**options).options) == expected


@pytest.mark.parametrize(("sig_name", "opts_name"), CASES)
def test_apply_async_sends_options_merged_as_celery(
    ours: Any, theirs: Any, sig_name: str, opts_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    build, options = SIGNATURES[sig_name], CALL_OPTIONS[opts_name]
    got, expected = captured(ours, monkeypatch), captured(theirs, monkeypatch)
    build(theirs).apply_async((2,), **options)
    build(ours).apply_async((2,), **options)
    assert got == expected and len(got) == 1


def test_a_clone_for_another_group_still_counts_into_its_own(ours: Any, theirs: Any) -> None:
    for task in (ours, theirs):
        member = task.s(1)
        member.freeze(group_id="outer")
        assert member.clone(group_id="inner").options["group_id"] == "outer"
        assert task.s(1).clone(group_id="inner").options["group_id"] == "inner"  # none of its own: taken


def test_stamps_survive_a_clone_and_a_send_with_options(
    ours: Any, theirs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    got, expected = captured(ours, monkeypatch), captured(theirs, monkeypatch)
    for task in (theirs, ours):
        sig = task.s(1)
        sig.stamp(tenant="acme")
        copy = sig.clone(tenant="evil", stamped_headers=[])
        assert (copy.options["tenant"], copy.options["stamped_headers"]) == ("acme", ["tenant"])
        copy.apply_async((2,), tenant="evil", stamped_headers=["x"], x=1)
    assert got == expected
    assert got[0]["options"]["tenant"] == "acme" and got[0]["options"]["stamped_headers"] == ["tenant"]


def test_apply_keeps_group_and_stamps_as_celery(ours: Any, theirs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    got, expected = captured(ours, monkeypatch, "apply"), captured(theirs, monkeypatch, "apply")
    for task in (theirs, ours):
        stamped(task).set(group_id="g1").apply((2,), group_id="g2", foo="b", queue="q2")
    assert got == expected
    assert got[0]["options"] == {"foo": "a", "stamped_headers": ["foo"], "group_id": "g1", "queue": "q2"}


def test_apply_async_ignores_options_given_as_none(ours: Any, theirs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    got, expected = captured(ours, monkeypatch), captured(theirs, monkeypatch)
    for task in (theirs, ours):
        task.s(1).set(queue="q1", countdown=5).apply_async(queue=None, countdown=None, priority=None)
    assert got == expected
    assert got[0]["options"] == {"queue": "q1", "countdown": 5}


def test_an_immutable_signature_takes_no_call_time_kwargs(ours: Any, theirs: Any) -> None:
    for task in (theirs, ours):
        copy = task.si(1).clone((2,), {"y": 3}, queue="q2")
        assert (tuple(copy.args), copy.kwargs, copy.options) == ((1,), {}, {"queue": "q2"})
    assert plain(ours.si(1).clone(kwargs={"y": 3})) == plain(theirs.si(1).clone(kwargs={"y": 3}))


def test_group_members_keep_their_stamps_when_the_group_is_sent_with_options(
    ours: Any, theirs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    got, expected = captured(ours, monkeypatch), captured(theirs, monkeypatch)
    for task, make in ((theirs, celery.group), (ours, group)):
        flow = make(task.s(1), task.s(2))
        flow.stamp(foo="a")
        flow.apply_async(foo="b", stamped_headers=["bar"], bar=1)
    assert len(got) == len(expected) == 2
    for mine, celerys in zip(got, expected, strict=True):
        assert {k: mine["options"][k] for k in ("foo", "stamped_headers", "bar")} == {
            "foo": "a",
            "stamped_headers": ["foo"],
            "bar": 1,
        }
        assert {k: celerys["options"][k] for k in ("foo", "stamped_headers", "bar")} == {
            "foo": "a",
            "stamped_headers": ["foo"],
            "bar": 1,
        }


def test_the_original_signature_is_left_as_it_was(ours: Any) -> None:
    sig = stamped(ours).set(group_id="g1")
    before = plain(sig)
    sig.clone(group_id="g2", foo="b", queue="q")
    assert plain(sig) == before and isinstance(sig.clone(queue="q"), Signature)


def test_a_group_keeps_its_own_stamped_headers_but_not_their_values(
    ours: Any, theirs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Celery's ``group._freeze_gid`` keeps only ``group_id``/``stamped_headers`` of the group's own."""
    got, expected = captured(ours, monkeypatch), captured(theirs, monkeypatch)
    for task, make in ((theirs, celery.group), (ours, group)):
        make(task.s(1), task.s(2)).set(stamped_headers=["foo"], foo="a").apply_async(
            stamped_headers=["bar"], foo="b", bar=1
        )
    keys = ("foo", "stamped_headers", "bar")
    assert [{k: m["options"][k] for k in keys} for m in got] == [{k: m["options"][k] for k in keys} for m in expected]
    assert got[0]["options"]["stamped_headers"] == ["foo"] and got[0]["options"]["foo"] == "b"


def test_a_clone_does_not_share_the_options_it_was_given(ours: Any, theirs: Any) -> None:
    """Celery's ``clone`` deep-copies the merged options: linking more onto one clone leaves the
    caller's ``link`` list, and so the next clone made from it, as they were."""
    for task in (theirs, ours):
        given = {"link": [task.si(8)], "headers": {"h": 1}}
        first = task.s(1).clone(**given)
        first.link(task.si(9))
        first.options["headers"]["h"] = 2
        second = task.s(1).clone(**given)
        assert [plain(cb)["args"] for cb in second.options["link"]] == [[8]]
        assert second.options["headers"] == {"h": 1} and len(given["link"]) == 1
