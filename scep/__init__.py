"""SCEP: Smart Chaos Engineering Platform."""

from scep.celery import app as celery_app

__all__ = ["celery_app"]
