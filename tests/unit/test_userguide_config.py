"""User Guide, Configuration and defaults: ``app.conf.<any Celery setting>`` reads what Celery 5.7's
reads when nothing set it, so code that looks a setting up keeps working after the import change.
"""

from __future__ import annotations

from typing import Any

import celery
import pytest

from engine import App
from engine.celery_settings import CELERY_SETTINGS
from engine.config import DEFAULTS

NOWHERE = "redis://127.0.0.1:1/0"
# Backends we do not have, and Celery's class paths: None here (engine.celery_defaults says why).
NOT_OURS = ("azureblockblob_", "cosmosdbsql_", "gcs_", "cassandra_", "database_", "elasticsearch_", "cache_backend")
CLASS_PATHS = {"beat_scheduler", "worker_autoscaler", "worker_consumer"}


@pytest.fixture
def conf() -> Any:
    app = App("ug_config", broker=NOWHERE)
    yield app.conf
    app.close()


def _plain(value: Any) -> Any:
    """Celery keeps some defaults as tuples or timedeltas; compare them as values."""
    if hasattr(value, "total_seconds"):
        return value.total_seconds()
    return list(value) if isinstance(value, tuple) else value


def test_every_celery_setting_reads_celerys_default(conf: Any) -> None:
    theirs = celery.Celery(set_as_current=False).conf
    ours_on_purpose = {n for n in DEFAULTS.keys() & CELERY_SETTINGS if _plain(DEFAULTS[n]) != _plain(theirs[n])}
    assert ours_on_purpose <= {"broker_use_ssl", "task_send_sent_event", "timezone", "worker_send_task_events"}
    for name in sorted(CELERY_SETTINGS - ours_on_purpose - CLASS_PATHS - {"broker_url"}):
        if name.startswith(NOT_OURS):
            continue
        assert _plain(conf[name]) == _plain(theirs[name]), name
        assert _plain(getattr(conf, name)) == _plain(theirs[name]), name
        assert name in conf


def test_a_default_changed_in_place_stays_changed(conf: Any) -> None:
    conf.task_publish_retry_policy["max_retries"] = 9
    assert conf.task_publish_retry_policy["max_retries"] == 9
    assert conf.changes()["task_publish_retry_policy"]["max_retries"] == 9
    assert "task_default_delivery_mode" not in conf.changes()  # read, not changed
    other = App("ug_config_other", broker=NOWHERE)
    assert other.conf.task_publish_retry_policy["max_retries"] == 3  # each app its own copy
    other.close()


def test_unknown_names_still_raise(conf: Any) -> None:
    with pytest.raises(AttributeError, match="task_defualt_queue"):
        _ = conf.task_defualt_queue
    with pytest.raises(KeyError):
        _ = conf["task_defualt_queue"]
    assert "task_defualt_queue" not in conf
    assert conf.get("task_default_exchange", "given") == "given"  # get's own default for an unset name


FROM_CONFIG = {
    "serializer": "task_serializer",
    "rate_limit": "task_default_rate_limit",
    "priority": "task_default_priority",
    "track_started": "task_track_started",
    "acks_late": "task_acks_late",
    "acks_on_failure_or_timeout": "task_acks_on_failure_or_timeout",
    "reject_on_worker_lost": "task_reject_on_worker_lost",
    "ignore_result": "task_ignore_result",
    "store_eager_result": "task_store_eager_result",
    "store_errors_even_if_ignored": "task_store_errors_even_if_ignored",
}


@pytest.mark.parametrize(
    "settings", [{}, {"task_acks_late": True, "task_default_priority": 5, "task_ignore_result": True}]
)
def test_task_attributes_read_the_apps_settings_as_celerys(settings: dict[str, Any]) -> None:
    def work() -> None:
        """Any task."""

    theirs = celery.Celery("ug_attrs", set_as_current=False)
    theirs.conf.update(settings)
    ours = App("ug_attrs", broker=NOWHERE, **settings)
    their_plain, our_plain = theirs.task(name="ug.plain")(work), ours.task(name="ug.plain")(work)
    their_own = theirs.task(name="ug.own", acks_late=False, serializer="pickle", priority=1)(work)
    our_own = ours.task(name="ug.own", acks_late=False, serializer="pickle", priority=1)(work)
    for attr in FROM_CONFIG:
        assert getattr(our_plain, attr) == getattr(their_plain, attr), attr
        assert getattr(our_own, attr) == getattr(their_own, attr), attr
    assert our_plain.own("acks_late") is None and our_own.own("acks_late") is False
    our_plain.rate_limit = "2/s"  # as the worker's rate_limit command sets it
    assert our_plain.rate_limit == "2/s" and ours.tasks["ug.plain"].rate_limit == "2/s"
    ours.close()


def test_config_from_envvar_and_current_task(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from engine.exceptions import ImproperlyConfigured
    from engine.request import Request
    from engine.trace import run

    (tmp_path / "ug_envconfig.py").write_text("task_default_queue = 'from-env'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("UG_CONFIG_MODULE", "ug_envconfig")
    app = App("ug_envvar", broker=NOWHERE)
    app.config_from_envvar("UG_CONFIG_MODULE")
    assert app.conf.task_default_queue == "from-env"
    monkeypatch.delenv("UG_CONFIG_MODULE")
    app.config_from_envvar("UG_CONFIG_MODULE", silent=True)
    with pytest.raises(ImproperlyConfigured, match="UG_CONFIG_MODULE"):
        app.config_from_envvar("UG_CONFIG_MODULE")
    seen: list[Any] = []
    task = app.task(name="ug.who")(lambda: seen.append(app.current_task))
    assert app.current_task is None
    run(app, task, Request(id="who-1", name=task.name, called_directly=False), store=False)
    assert seen == [task]
    app.close()


def test_app_task_can_be_replaced_as_in_the_application_guide() -> None:
    from engine import Task

    class MyBaseTask(Task):
        queue = "hipri"

    app = App("ug_base", broker=NOWHERE)
    before = app.task(name="ug.before")(lambda: None)
    app.Task = MyBaseTask  # type: ignore[misc]
    after = app.task(name="ug.after")(lambda: None)
    assert issubclass(app.Task, MyBaseTask) and app.Task.__name__ == "MyBaseTask"
    assert isinstance(after, MyBaseTask) and after.queue == "hipri" and after.app is app
    assert not isinstance(before, MyBaseTask) and before.queue is None
    app.close()


def test_task_typing_reads_true_by_default_as_celerys() -> None:
    def work(x: int) -> int:
        return x

    theirs = celery.Celery("ug_typing", set_as_current=False).task(name="ug.typed")(work)
    app, lax = App("ug_typing", broker=NOWHERE), App("ug_lax", broker=NOWHERE, strict_typing=False)
    assert app.task(name="ug.typed")(work).typing is theirs.typing is True
    assert app.task(name="ug.untyped", typing=False)(work).typing is False
    assert lax.task(name="ug.typed")(work).typing is False
    app.close()
    lax.close()


def test_result_expires_as_a_timedelta_as_the_configuration_guide_writes_it(redis_url: str, redis_client: Any) -> None:
    import datetime as dt

    from engine.request import Request
    from engine.trace import run

    app = App("ug_expires", broker=redis_url, backend=redis_url, result_expires=dt.timedelta(hours=1))
    task = app.task(name="ug.kept_an_hour")(lambda: 1)
    outcome = run(app, task, Request(id="expires-1", name=task.name, called_directly=False))
    assert outcome.state == "SUCCESS" and outcome.internal is None  # the store worked
    assert 3590 <= redis_client.ttl("celery-task-meta-expires-1") <= 3600
    assert app.AsyncResult("expires-1").get(timeout=5) == 1
    app.close()


def test_humanize_and_table_show_the_changes_without_secrets() -> None:
    app = App("ug_humanize", broker="redis://:s3cret@127.0.0.1:1/0", task_default_queue="q")
    theirs = celery.Celery("ug_humanize", broker="redis://:s3cret@127.0.0.1:1/0", set_as_current=False)
    theirs.conf.task_default_queue = "q"
    for conf in (theirs.conf, app.conf):
        text = conf.humanize()
        assert "task_default_queue: 'q'" in text.splitlines()
        assert "s3cret" not in text and "s3cret" not in str(conf.table())
        assert conf.table()["task_default_queue"] == "q" and "task_acks_late" not in conf.table()
        assert conf.table(with_defaults=True)["task_acks_late"] is False
        assert "s3cret" in conf.table(censored=False)["broker_url"]
    app.close()
