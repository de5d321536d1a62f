"""Collected metric series and the findings drawn from them."""

from __future__ import annotations

from django.db import models


class Phase(models.TextChoices):
    BASELINE = "baseline", "Baseline"
    DURING = "during", "During"
    RECOVERY = "recovery", "Recovery"


class MetricSeries(models.Model):
    """A chunk of one metric's samples in one phase of a run.

    Collectors flush a chunk every few seconds so that a crash loses at most one chunk;
    readers concatenate chunks by ``seq``. Timestamps are Unix epoch seconds.
    """

    run = models.ForeignKey("experiments.Run", on_delete=models.CASCADE, related_name="series")
    metric = models.CharField(max_length=100, db_index=True)
    labels = models.JSONField(default=dict, blank=True)
    phase = models.CharField(max_length=16, choices=Phase.choices)
    seq = models.PositiveIntegerField(default=0)
    timestamps = models.JSONField(default=list)
    values = models.JSONField(default=list)

    class Meta:
        ordering = ["run", "metric", "seq"]
        verbose_name_plural = "metric series"

    def __str__(self) -> str:
        return f"{self.metric} [{self.phase}] ({len(self.values)} points)"


class Severity(models.TextChoices):
    INFO = "info", "Info"
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class Finding(models.Model):
    """A conclusion about one metric (or the run), with the numbers behind it."""

    run = models.ForeignKey("experiments.Run", on_delete=models.CASCADE, related_name="findings")
    metric = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=40, db_index=True)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    confidence = models.FloatField()
    title = models.CharField(max_length=200)
    summary = models.TextField(blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "-confidence", "id"]

    def __str__(self) -> str:
        return self.title


class SuggestionStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACCEPTED = "accepted", "Accepted"
    DISMISSED = "dismissed", "Dismissed"


class Suggestion(models.Model):
    """A next experiment proposed from a run's analysis: a complete, valid spec that one
    call turns into an experiment."""

    run = models.ForeignKey("experiments.Run", on_delete=models.CASCADE, related_name="suggestions")
    kind = models.CharField(max_length=40, db_index=True)
    title = models.CharField(max_length=200)
    rationale = models.TextField(blank=True)
    spec = models.JSONField()
    rank = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=12, choices=SuggestionStatus.choices, default=SuggestionStatus.OPEN
    )
    experiment = models.ForeignKey(
        "experiments.Experiment",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="from_suggestions",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "rank", "id"]

    def __str__(self) -> str:
        return self.title
