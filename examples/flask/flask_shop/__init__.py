"""The app factory, and the task app made from it as Flask's documentation shows for Celery."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from engine import App, Task


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        DATABASE=os.path.join(app.instance_path, "shop.sqlite3"),
        CELERY={
            "broker_url": os.environ.get("CELERY_BROKER_URL"),  # None: TQCTL_BROKER, else the bundled broker
            "result_backend": os.environ.get("CELERY_RESULT_BACKEND"),
            "task_ignore_result": True,
        },
    )
    app.config.from_prefixed_env()  # FLASK_DATABASE=..., FLASK_CELERY__broker_url=...
    if test_config:
        app.config.update(test_config)
    celery_init_app(app)

    from flask_shop import db, views

    db.init_app(app)
    app.register_blueprint(views.bp)
    return app


def celery_init_app(app: Flask) -> App:
    """Every task runs inside ``app.app_context()``, so it can use ``current_app``, ``g`` and the
    database helpers exactly as a view does."""

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = App(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
