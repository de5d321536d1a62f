"""The Celery application. The broker carries only ids; run state lives in the database."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scep.settings")

app = Celery("scep")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
