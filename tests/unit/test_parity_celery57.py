"""Celery 5.7 parity a migrating user's code leans on: each case runs the same code against Celery's
own classes (eager, in memory) and ours, and expects the same answer."""

from __future__ import annotations

from typing import Any

import celery
import pytest

from engine import App


def _celery_app() -> celery.Celery:
    app = celery.Celery("parity", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.task_always_eager = True
    return app


@pytest.fixture
def ours() -> Any:
    app = App("parity", broker="memory://", backend="cache+memory://")
    app.conf.task_always_eager = True
    yield app
    app.close()


def _after_return_calls(app: Any) -> list[tuple[str, str, Any]]:
    """Which ``einfo`` each outcome hands ``after_return``: code that reads ``einfo.traceback``
    there only works if it gets what Celery gives."""
    calls: list[tuple[str, str, Any]] = []

    class Hooked(app.Task):  # type: ignore[name-defined,misc]
        def after_return(self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
            calls.append((status, type(retval).__name__, einfo))

    @app.task(base=Hooked, name="parity.hooked")
    def hooked(fail: bool) -> int:
        if fail:
            raise KeyError("no")
        return 1

    hooked.apply((False,))
    hooked.apply((True,))
    return calls


def test_after_return_gets_none_for_einfo_on_success_and_failure_as_celery(ours: App) -> None:
    theirs = _after_return_calls(_celery_app())
    assert theirs == [("SUCCESS", "int", None), ("FAILURE", "KeyError", None)]
    assert _after_return_calls(ours) == theirs


def test_find_option_names_the_setting_celerys_does(ours: App) -> None:
    """Every full name, every short name and every namespace, with and without a namespace given."""
    from engine.celery_settings import CELERY_SETTINGS
    from engine.conf_search import GROUPS

    theirs = _celery_app().conf
    queries = [(name, "") for name in sorted(CELERY_SETTINGS)]
    queries += [(key, "") for keys in GROUPS.values() for key in sorted(keys)]
    queries += [(key, ns) for ns, keys in GROUPS.items() for key in sorted(keys)]
    queries += [(ns, "") for ns in GROUPS] + [("EXPIRES", ""), ("url", "result")]
    for name, namespace in queries:
        expected = theirs.find_option(name, namespace)
        found = ours.conf.find_option(name, namespace)
        assert (found.namespace, found.key) == (expected.namespace, expected.key), (name, namespace)
    assert ours.conf.find_option("prefetch_multiplier").type.default == 4
    assert ours.conf.find_value_for_key("prefetch_multiplier") == theirs.find_value_for_key("prefetch_multiplier")
    with pytest.raises(KeyError):
        ours.conf.find_option("no_such_setting")
    with pytest.raises(KeyError):
        theirs.find_option("no_such_setting")


def test_result_expires_defaults_to_celerys_timedelta(ours: App) -> None:
    theirs = _celery_app().conf.result_expires
    assert ours.conf.result_expires == theirs and ours.conf.result_expires.total_seconds() == 86400
    assert "result_expires" not in ours.conf.changes()  # inspect conf lists it only once changed, as Celery's


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"minute": "*/15", "hour": "9-17", "day_of_week": "mon-fri"},
        {"minute": [0, 30], "hour": "22-3"},
        {"day_of_week": "sat,sun", "day_of_month": "1-31/10", "month_of_year": "jan-mar"},
        {"minute": 5, "hour": "0-23/4", "day_of_week": "*/3", "month_of_year": "*/5"},
    ],
)
def test_crontab_fields_are_the_sets_of_ints_celerys_are(spec: dict[str, Any]) -> None:
    from celery.schedules import crontab as celery_crontab

    from engine.schedules import crontab

    theirs, ours = celery_crontab(**spec), crontab(**spec)
    for field in ("minute", "hour", "day_of_week", "day_of_month", "month_of_year"):
        assert getattr(ours, field) == getattr(theirs, field), field
    assert ours.with_tz("Europe/Paris").minute == theirs.minute  # the text is kept to rebuild it


@pytest.mark.parametrize("args", [(), (2.0,), (1,), (0.5, "x")])
def test_time_limit_errors_read_as_celerys(args: tuple[Any, ...]) -> None:
    """Before: ours had Exception's ``str()`` (``''`` with no arguments, the argument alone with one),
    so a stored traceback ended ``SoftTimeLimitExceeded: `` where Celery's reads
    ``SoftTimeLimitExceeded: SoftTimeLimitExceeded()`` and ``str(result.result)`` of a hard limit
    read ``2.0`` where Celery's reads ``TimeLimitExceeded(2.0,)``. Celery's are billiard's classes."""
    import billiard.exceptions

    from engine import exceptions

    for name in ("SoftTimeLimitExceeded", "TimeLimitExceeded"):
        theirs, ours = getattr(billiard.exceptions, name)(*args), getattr(exceptions, name)(*args)
        assert (str(ours), repr(ours), ours.args) == (str(theirs), repr(theirs), theirs.args)
