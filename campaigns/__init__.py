"""Campaigns: named sets of experiments run on a schedule (Celery beat), and game days."""
