"""What the worker loads: ``tqctl worker -A make_celery`` (Flask's docs: ``celery -A make_celery worker``)."""

from flask_shop import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
