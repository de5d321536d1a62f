"""Celery beat scheduler: django-celery-beat's DatabaseScheduler, with sub-second entries.

Campaign schedules are PeriodicTask rows so they can be edited in the admin and picked
up by a running beat. The static entries of ``CELERY_BEAT_SCHEDULE`` (the reaper, the
campaign tick) are written to the same table at start-up; django-celery-beat stores an
interval as whole seconds, which would turn a 0.5 s reaper into a 0 s busy loop, so an
interval that is not a whole number of seconds is stored in microseconds instead.
"""

from __future__ import annotations

from typing import Any

from celery import schedules
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry

__all__ = ["Scheduler"]


class _Entry(ModelEntry):
    @classmethod
    def to_model_schedule(cls, schedule: Any) -> tuple[Any, str]:
        from django_celery_beat.models import IntervalSchedule

        schedule = schedules.maybe_schedule(schedule)
        if type(schedule) is schedules.schedule:
            seconds = schedule.run_every.total_seconds()
            if seconds != int(seconds):
                model, _ = IntervalSchedule.objects.get_or_create(
                    every=max(1, round(seconds * 1_000_000)),
                    period=IntervalSchedule.MICROSECONDS,
                )
                return model, "interval"
        return super().to_model_schedule(schedule)


class Scheduler(DatabaseScheduler):
    """The beat scheduler named by ``CELERY_BEAT_SCHEDULER``."""

    Entry = _Entry
