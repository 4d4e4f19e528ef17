"""The App surface web frameworks' documented patterns use: a dict config (Flask), a namespace
(Django), ``autodiscover_tasks`` (lazy, as Celery's), ``set_default`` and the Django fix-up switch."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import App, shared, shared_task, signals
from engine.fixups.django import DjangoFixup

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_leftover_shared_tasks() -> Iterator[None]:
    """``shared_task`` declarations and the current app are process-wide: put them back after."""
    declarations, apps = list(shared._declarations), list(shared._apps)
    yield
    shared._declarations[:], shared._apps[:] = declarations, apps


def write_package(root: Path, name: str, tasks: str | None) -> None:
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    if tasks is not None:
        (package / "tasks.py").write_text(tasks)


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("discoverme_")]:
        del sys.modules[name]


def test_config_from_object_takes_a_dict_like_flask_config() -> None:
    app = App("flaskish")
    app.config_from_object({"broker_url": "redis://h:1/2", "task_ignore_result": True, "RESULT_BACKEND": None})
    assert app.conf.broker_url == "redis://h:1/2"
    assert app.conf.task_ignore_result is True


def test_config_from_object_dict_with_a_namespace_keeps_only_its_names() -> None:
    app = App("djangoish")
    app.config_from_object({"CELERY_BROKER_URL": "redis://h:1/3", "DEBUG": True}, namespace="CELERY")
    assert app.conf.broker_url == "redis://h:1/3"
    assert "debug" not in app.conf


def test_autodiscover_is_lazy_until_the_worker_imports_task_modules(packages: Path) -> None:
    write_package(
        packages, "discoverme_a", "from engine import shared_task\n\n@shared_task\ndef hello():\n    return 1\n"
    )
    write_package(packages, "discoverme_b", None)  # no tasks module: skipped, not an error
    app = App("disco")
    app.autodiscover_tasks(["discoverme_a", "discoverme_b"])
    assert "discoverme_a.tasks" not in sys.modules
    app.import_default_modules()  # what the worker calls at start
    assert "discoverme_a.tasks.hello" in app.tasks


def test_autodiscover_force_imports_now_and_a_broken_tasks_module_is_an_error(packages: Path) -> None:
    write_package(packages, "discoverme_c", "X = 1\n")
    write_package(packages, "discoverme_d", "import discoverme_no_such_dependency\n")
    app = App("disco2")
    assert [m.__name__ for m in app.autodiscover_tasks(lambda: ["discoverme_c"], force=True) or []] == [
        "discoverme_c.tasks"
    ]
    with pytest.raises(ModuleNotFoundError, match="discoverme_no_such_dependency"):
        app.autodiscover_tasks(["discoverme_d"], force=True)


def test_set_default_makes_shared_tasks_use_that_app() -> None:
    first = App("first")
    App("second")

    @shared_task
    def which() -> str:
        return "x"

    first.set_default()
    assert which.app is first


def test_django_fixup_is_installed_only_with_django_settings_module(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("django")
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    assert App("plain")._fixups == []
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "no_such_settings_for_this_test")
    app = App("dj")
    assert [type(fix) for fix in app._fixups] == [DjangoFixup]
    assert signals.import_modules.has_listeners(app)


def test_a_base_class_from_app_task_wraps_every_run_like_flasks_app_context() -> None:
    """Flask's pattern: ``class FlaskTask(app.Task)`` whose ``__call__`` opens a context around ``run``."""
    app = App("flaskbase")
    entered: list[str] = []

    class ContextTask(app.Task):  # type: ignore[misc, name-defined]
        def __call__(self, *args: object, **kwargs: object) -> object:
            entered.append(self.name)
            return self.run(*args, **kwargs)

    @app.task(base=ContextTask)
    def double(x: int) -> int:
        return 2 * x

    assert double.apply((4,)).get() == 8
    assert entered == [double.name]


ON_COMMIT_SCRIPT = """
import django
from django.conf import settings

settings.configure(DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})
django.setup()
from django.db import transaction

from engine import App

app = App("oncommit", task_always_eager=True)
ran = []


@app.task
def record(x):
    ran.append(x)


with transaction.atomic():
    record.delay_on_commit(1)
    record.apply_async_on_commit((2,))
    assert ran == [], ran
assert ran == [1, 2], ran
try:
    with transaction.atomic():
        record.delay_on_commit(3)
        raise RuntimeError("roll back")
except RuntimeError:
    pass
record.delay_on_commit(4)  # outside a transaction: at once, as Django's on_commit
print(ran)
"""


def test_delay_on_commit_sends_at_commit_and_never_after_a_rollback() -> None:
    """In a process of its own: Django's settings are process-wide once configured."""
    pytest.importorskip("django")
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", ON_COMMIT_SCRIPT], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[1, 2, 4]"), done.stderr
