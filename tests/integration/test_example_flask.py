"""examples/flask run for real: the app factory in this process (Flask's test client), and a
``tqctl worker -A make_celery`` process that runs its tasks inside ``app.app_context()``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import shared
from tests.integration.harness import ROOT, WorkerProcess, wait_for

flask = pytest.importorskip("flask")

EXAMPLE = ROOT / "examples" / "flask"


@pytest.fixture
def flask_app(broker_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The example's Flask app and a prefork worker on it, both on this test's server and database."""
    database = str(tmp_path / "shop.sqlite3")
    env = {"PYTHONPATH": os.pathsep.join([str(EXAMPLE), str(ROOT)]), "FLASK_DATABASE": database}
    worker = WorkerProcess(
        broker_url, ["-c", "2", "-n", "flask@%h", "-l", "info"], tmp_path / "w.log", env, "make_celery"
    )
    monkeypatch.syspath_prepend(str(EXAMPLE))
    declarations, apps = list(shared._declarations), list(shared._apps)
    try:
        from flask_shop import create_app
        from flask_shop.db import init_db

        app = create_app({"DATABASE": database, "CELERY": {"broker_url": broker_url, "result_backend": broker_url}})
        with app.app_context():
            init_db()
        worker.wait_ready(60)
        yield app
    finally:
        worker.close()
        if "app" in locals():
            app.extensions["celery"].close()
        shared._declarations[:], shared._apps[:] = declarations, apps
        for name in [n for n in sys.modules if n == "flask_shop" or n.startswith("flask_shop.")]:
            del sys.modules[name]


def test_task_sent_from_a_view_reads_back_through_the_result_view(flask_app: Any) -> None:
    client = flask_app.test_client()
    result_id = client.post("/add", data={"a": "2", "b": "3"}).get_json()["result_id"]
    replies: list[dict[str, Any]] = []
    wait_for(
        lambda: replies.append(client.get(f"/result/{result_id}").get_json()) or replies[-1]["ready"], 30, "result"
    )
    assert replies[-1] == {"ready": True, "successful": True, "value": 5}


def test_tasks_run_inside_the_flask_application_context(flask_app: Any) -> None:
    client = flask_app.test_client()
    result_id = client.post("/visits", data={"name": "ada"}).get_json()["result_id"]
    # record_visit uses current_app's database: outside an app context it raises RuntimeError.
    assert flask_app.extensions["celery"].AsyncResult(result_id).get(timeout=30) == 1
    assert client.get("/visits").get_json() == {"names": ["ada"]}


def test_bad_form_input_is_a_readable_400(flask_app: Any) -> None:
    client = flask_app.test_client()
    for form in ({"a": "x", "b": "3"}, {"a": "2"}):
        reply = client.post("/add", data=form)
        assert (reply.status_code, reply.get_json()) == (400, {"error": "a and b must be integers, e.g. -d a=2 -d b=3"})
    reply = client.post("/visits", data={})
    assert (reply.status_code, reply.get_json()) == (400, {"error": "name is required, e.g. -d name=ada"})
