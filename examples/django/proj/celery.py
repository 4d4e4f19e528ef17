"""The project's task app: Celery's ``proj/celery.py`` with one import changed."""

import os

from engine import App

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = App("proj")
# Every Django setting named CELERY_* configures the app: CELERY_BROKER_URL → broker_url, ...
app.config_from_object("django.conf:settings", namespace="CELERY")
# Import ``tasks.py`` of every installed Django app when the worker starts.
app.autodiscover_tasks()
