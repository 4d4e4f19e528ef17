"""Celery 3's upper-case setting names (``CELERY_TASK_SERIALIZER``, ``CELERYD_MAX_TASKS_PER_CHILD``,
``BROKER_URL``) set on ``app.conf`` after the app is made: they set today's setting, as Celery 5.7's
do, and both names read the value. Each case is run on a Celery app beside ours.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from typing import Any

import celery
import pytest
import redis
from celery.app.defaults import _TO_NEW_KEY, _TO_OLD_KEY
from celery.exceptions import ImproperlyConfigured as CeleryImproperlyConfigured

from engine import App
from engine.celery_settings import NEW_TO_OLD, OLD_TO_NEW
from engine.exceptions import ImproperlyConfigured
from engine.protocol import task as protocol

NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens on port 1: any connection attempt fails


@pytest.fixture
def ours() -> Iterator[App]:
    app = App("old_names", broker=NOWHERE)
    yield app
    app.close()


@pytest.fixture
def theirs() -> Any:
    return celery.Celery("old_names", broker=NOWHERE, set_as_current=False)


def _set_attr(conf: Any, name: str, value: Any) -> None:
    setattr(conf, name, value)


def _set_item(conf: Any, name: str, value: Any) -> None:
    conf[name] = value


def _update(conf: Any, name: str, value: Any) -> None:
    conf.update({name: value})


WRITES = [_set_attr, _set_item, _update]


@pytest.mark.parametrize("write", WRITES)
@pytest.mark.parametrize(
    ("old", "new", "value"),
    [
        ("CELERY_TASK_SERIALIZER", "task_serializer", "pickle"),
        ("CELERYD_MAX_TASKS_PER_CHILD", "worker_max_tasks_per_child", 3),
        ("CELERY_RESULT_BACKEND", "result_backend", "redis://h:1/2"),
        ("BROKER_URL", "broker_url", "redis://h:1/3"),
    ],
)
def test_an_old_name_set_after_creation_is_read_under_both_names(
    ours: App, theirs: Any, write: Callable[[Any, str, Any], None], old: str, new: str, value: Any
) -> None:
    """Before: stored under the old name only (``update`` lowercased it), so ``conf.<new>`` and
    the engine kept the default. Now as in Celery: the new name, the old one and ``get`` read it."""
    for conf in (ours.conf, theirs.conf):
        write(conf, old, value)
        assert getattr(conf, new) == value
        assert getattr(conf, old) == value
        assert conf[new] == conf[old] == conf.get(new) == conf.get(old) == value
        assert old in conf and new in conf


def test_the_last_write_wins_under_either_name(ours: App, theirs: Any) -> None:
    """Set before Celery reads its configuration, both names hold the last value written."""
    for conf in (ours.conf, theirs.conf):
        conf.task_serializer = "json"
        conf.CELERY_TASK_SERIALIZER = "pickle"
        assert (conf.task_serializer, conf.CELERY_TASK_SERIALIZER) == ("pickle", "pickle")
    ours.conf.task_serializer = "yaml"
    assert (ours.conf.task_serializer, ours.conf.CELERY_TASK_SERIALIZER) == ("yaml", "yaml")


def test_an_unset_old_name_reads_the_default_and_a_lowercase_one_is_no_setting(ours: App, theirs: Any) -> None:
    for conf in (ours.conf, theirs.conf):
        assert conf.CELERYD_PREFETCH_MULTIPLIER == conf.worker_prefetch_multiplier == 4
        assert conf.CELERY_DEFAULT_QUEUE == "celery"
        with pytest.raises(AttributeError):
            _ = conf.celeryd_prefetch_multiplier  # Celery's old names are upper case only
        assert "celeryd_prefetch_multiplier" not in conf
    assert ours.conf.get("CELERY_ACKS_LATE", "unset") is False  # its value, not get's default


def test_the_old_names_are_celerys() -> None:
    assert OLD_TO_NEW == _TO_NEW_KEY
    assert NEW_TO_OLD == _TO_OLD_KEY


def test_an_old_always_eager_set_as_an_attribute_runs_tasks_inline(ours: App) -> None:
    """Before: ``CELERY_ALWAYS_EAGER`` stayed a name of its own and ``delay()`` tried the broker
    (nothing listens there: it raised). Now the task runs inline, as under Celery."""
    add = ours.task(name="old_names.add")(lambda x, y: x + y)
    ours.conf.CELERY_ALWAYS_EAGER = True
    assert add.delay(2, 3).get() == 5


def test_an_old_serializer_set_as_an_item_reaches_the_message(redis_url: str, redis_client: redis.Redis) -> None:
    app = App("old_names_wire", broker=redis_url, backend=redis_url)
    try:
        noop = app.task(name="old_names.noop")(lambda: None)
        app.conf["CELERY_TASK_SERIALIZER"] = "pickle"
        noop.delay()
        [raw] = redis_client.lrange("celery", 0, -1)
        message = protocol.decode(raw, frozenset({"application/json", "application/x-python-serialize"}))
        assert message.content_type == "application/x-python-serialize"
    finally:
        app.close()


def test_old_names_given_to_update_leave_no_startup_warning(ours: App) -> None:
    """Before: ``'celeryd_max_tasks_per_child' is not a Celery setting (misspelt?)`` at worker start."""
    ours.conf.update(CELERYD_MAX_TASKS_PER_CHILD=3, CELERYD_PREFETCH_MULTIPLIER=1)
    assert (ours.conf.worker_max_tasks_per_child, ours.conf.worker_prefetch_multiplier) == (3, 1)
    assert ours.conf.startup_warnings() == []


def test_old_names_as_constructor_arguments_set_todays_settings() -> None:
    app = App("old_names_kw", broker=NOWHERE, CELERY_ACKS_LATE=True, task_track_started=True)
    try:
        assert (app.conf.task_acks_late, app.conf.task_track_started) == (True, True)
    finally:
        app.close()


MIXED = {
    "mostly new": {"task_always_eager": 44, "worker_agent": "foo:A", "CELERY_DEFAULT_DELIVERY_MODE": 301},
    "mostly old": {"CELERY_ALWAYS_EAGER": 46, "CELERYD_AGENT": "foo:A", "task_default_delivery_mode": 301},
}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (
            "mostly new",
            "rename the following settings to the new format: CELERY_DEFAULT_DELIVERY_MODE -> "
            "task_default_delivery_mode",
        ),
        (
            "mostly old",
            "rename the following settings to use the old format: task_default_delivery_mode -> "
            "CELERY_DEFAULT_DELIVERY_MODE",
        ),
    ],
)
def test_config_from_object_refuses_a_mix_of_old_and_new_names(ours: App, theirs: Any, case: str, message: str) -> None:
    """Before: taken silently. Now refused as Celery refuses it (Celery raises on its next read),
    naming the names to rename, in one line."""
    config = types.SimpleNamespace(**MIXED[case])
    with pytest.raises(ImproperlyConfigured, match=message) as raised:
        ours.config_from_object(config)
    assert "\n" not in str(raised.value)
    theirs.config_from_object(config)
    with pytest.raises(CeleryImproperlyConfigured, match=message.split(": ")[1].replace(" -> ", r"\s+-> ")):
        _ = theirs.conf.task_always_eager


def test_a_setting_under_both_names_is_no_mix_and_its_new_name_wins(ours: App, theirs: Any) -> None:
    config = types.SimpleNamespace(task_acks_late=True, CELERY_ACKS_LATE=False, CELERY_TRACK_STARTED=True)
    for app in (ours, theirs):
        app.config_from_object(config)
        assert (app.conf.task_acks_late, app.conf.task_track_started) == (True, True)


def test_a_namespace_takes_new_names_only(ours: App, theirs: Any) -> None:
    config = types.SimpleNamespace(CELERY_TASK_ACKS_LATE=True, CELERY_ACKS_LATE=False)
    for app in (ours, theirs):
        app.config_from_object(config, namespace="CELERY")
        assert app.conf.task_acks_late is True
