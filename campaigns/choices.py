"""Choice sets of campaigns; execution status carries its terminal set."""

from __future__ import annotations

from django.db import models


class Mode(models.TextChoices):
    SERIAL = "serial", "Serial"
    PARALLEL = "parallel", "Parallel"


class ScheduleKind(models.TextChoices):
    NONE = "none", "Manual only"
    INTERVAL = "interval", "Every N seconds"
    CRONTAB = "crontab", "Crontab"


class Trigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    MANUAL = "manual", "Manual"
    GAME_DAY = "game_day", "Game day"


class ExecutionStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    SKIPPED = "skipped", "Skipped"
    CANCELLED = "cancelled", "Cancelled"

    @classmethod
    def terminal(cls) -> tuple[str, ...]:
        return (cls.COMPLETED, cls.SKIPPED, cls.CANCELLED)


class GameDayStatus(models.TextChoices):
    PLANNED = "planned", "Planned"
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
