"""Campaigns (ordered experiment sets with a schedule), their executions, and game days."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from campaigns.choices import ExecutionStatus, GameDayStatus, Mode, ScheduleKind, Trigger
from governance.models import default_team_id

#: The fields a user edits on a campaign (the API and the admin both offer these).
CAMPAIGN_FIELDS = (
    "name",
    "team",
    "description",
    "mode",
    "concurrency",
    "schedule_kind",
    "interval_seconds",
    "crontab",
    "paused",
)


class Campaign(models.Model):
    """A named, ordered set of experiments run together, by schedule or by hand.

    The schedule itself lives in django-celery-beat (``periodic_task``) so that beat picks
    it up without a restart and the admin can show it; this row is the source of truth
    and ``services.sync_schedule`` rewrites the periodic task from it on every change.
    """

    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.SERIAL)
    concurrency = models.PositiveIntegerField(
        default=2,
        validators=[MinValueValidator(1)],
        help_text="parallel mode: how many experiment runs at once",
    )
    schedule_kind = models.CharField(
        max_length=16, choices=ScheduleKind.choices, default=ScheduleKind.NONE
    )
    interval_seconds = models.PositiveIntegerField(null=True, blank=True)
    crontab = models.CharField(
        max_length=100, blank=True, help_text="five fields: minute hour day month weekday"
    )
    team = models.ForeignKey(
        "governance.Team",
        default=default_team_id,
        on_delete=models.PROTECT,
        related_name="campaigns",
        help_text="who owns it; its experiments and game days belong to the same team",
    )
    paused = models.BooleanField(default=False)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="campaign",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def experiments(self) -> list[str]:
        """Names of its experiments, in the order they run."""
        return [i.experiment.name for i in self.items.select_related("experiment")]

    @property
    def limit(self) -> int:
        """How many of its experiment runs may be active at once."""
        return 1 if self.mode == Mode.SERIAL else max(1, self.concurrency)


class CampaignItem(models.Model):
    """One experiment of a campaign, at its place in the order."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="items")
    experiment = models.ForeignKey(
        "experiments.Experiment", on_delete=models.PROTECT, related_name="campaign_items"
    )
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["campaign", "position"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "position"], name="uniq_campaign_position")
        ]

    def __str__(self) -> str:
        return f"{self.campaign.name}#{self.position} {self.experiment.name}"


class CampaignRun(models.Model):
    """One execution of a campaign: which experiment runs it started and how it ended.

    A scheduled execution that is held back (kill switch, pause, previous execution still
    going) is still recorded, as ``skipped`` with the reason, so the history shows every
    time beat fired and why nothing happened.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    status = models.CharField(
        max_length=16,
        choices=ExecutionStatus.choices,
        default=ExecutionStatus.RUNNING,
        db_index=True,
    )
    reason = models.TextField(blank=True, help_text="why it was skipped, held or cancelled")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    summary = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.campaign.name} execution {self.pk}"

    @property
    def is_terminal(self) -> bool:
        return self.status in ExecutionStatus.terminal()


class CampaignRunItem(models.Model):
    """One step of an execution: an experiment, and the run started for it (once started)."""

    campaign_run = models.ForeignKey(CampaignRun, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField()
    experiment = models.ForeignKey(
        "experiments.Experiment", on_delete=models.PROTECT, related_name="+"
    )
    run = models.OneToOneField(
        "experiments.Run",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="campaign_step",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="why the run could not be started")

    class Meta:
        ordering = ["campaign_run", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign_run", "position"], name="uniq_campaign_run_position"
            )
        ]

    def __str__(self) -> str:
        return f"step {self.position} of {self.campaign_run}"


class GameDay(models.Model):
    """A campaign stepped through by hand, with people watching and writing notes."""

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="game_days")
    name = models.CharField(max_length=200)
    status = models.CharField(
        max_length=16, choices=GameDayStatus.choices, default=GameDayStatus.PLANNED
    )
    execution = models.OneToOneField(
        CampaignRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="game_day"
    )
    observers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="observed_game_days"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class GameDayNote(models.Model):
    """A timestamped remark on a game day's timeline."""

    game_day = models.ForeignKey(GameDay, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    text = models.TextField()

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.text[:40]}"
