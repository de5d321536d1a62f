"""Targets, experiments (versioned specs), runs and their timelines, the kill switch."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from experiments.choices import Environment, EventKind, RunStatus, Verdict
from governance.models import default_team_id
from scep.crypto import resolve_reference
from scep.fields import EncryptedJSONField


class Target(models.Model):
    """A system a team owns and registers for experiments.

    ``config`` holds how SCEP reaches it: ``base_url``, named ``proxies`` (listen →
    upstream, hosted by the target's agent) and named ``processes`` (pid, name or
    command-line pattern). ``allowed`` is the owner's switch: preflight refuses a target
    that is not allowed.
    """

    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    team = models.ForeignKey(
        "governance.Team",
        on_delete=models.PROTECT,
        related_name="targets",
        default=default_team_id,
        help_text="who owns it; users act only within their teams",
    )
    environment = models.CharField(
        max_length=16, choices=Environment.choices, default=Environment.DEVELOPMENT
    )
    allowed = models.BooleanField(default=True)
    agent = models.CharField(max_length=100, default="local")
    config = models.JSONField(default=dict, blank=True)
    secrets = EncryptedJSONField(
        blank=True,
        default=dict,
        help_text='credentials shaped like config, e.g. {"postgres": {"dsn": ...}}; '
        "values may be env:NAME or file:/path; encrypted, never shown",
    )
    labels = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def connection_config(self, *, resolve: bool = True) -> dict[str, Any]:
        """``config`` with ``secrets`` merged in: what injectors connect with. Only ever
        handed to injectors, never stored, shown or reported. ``resolve=False`` leaves
        ``env:``/``file:`` references as written — enough for validation, which only
        needs to know a setting is there, on a host that may not hold the secret."""
        return merge_secrets(self.config or {}, self.secrets or {}, resolve=resolve)


def merge_secrets(
    config: dict[str, Any], secrets: dict[str, Any], *, resolve: bool = True
) -> dict[str, Any]:
    """A copy of ``config`` with ``secrets`` laid over it key by key (nested mappings
    merge; a secret string replaces the config value), references resolved."""
    merged = dict(config)
    for key, value in secrets.items():
        if isinstance(value, dict):
            base = merged.get(key)
            merged[key] = merge_secrets(
                base if isinstance(base, dict) else {}, value, resolve=resolve
            )
        else:
            merged[key] = resolve_reference(value) if resolve else value
    return merged


class Experiment(models.Model):
    """A named, validated experiment spec. Every change of spec adds a version row."""

    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    target = models.ForeignKey(Target, on_delete=models.PROTECT, related_name="experiments")
    team = models.ForeignKey(
        "governance.Team",
        on_delete=models.PROTECT,
        related_name="experiments",
        default=default_team_id,
        help_text="always its target's team (set by the catalog service)",
    )
    spec = models.JSONField()
    version = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class ExperimentVersion(models.Model):
    """An immutable snapshot of an experiment's spec; runs point at the one they used."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    spec = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["experiment", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["experiment", "version"], name="uniq_experiment_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.experiment.name} v{self.version}"


class Run(models.Model):
    """One execution of an experiment version. State lives here; the broker carries ids."""

    experiment = models.ForeignKey(Experiment, on_delete=models.PROTECT, related_name="runs")
    experiment_version = models.PositiveIntegerField()
    spec = models.JSONField()
    status = models.CharField(
        max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True
    )
    status_reason = models.TextField(blank=True)
    verdict = models.CharField(max_length=16, choices=Verdict.choices, blank=True)
    verdict_confidence = models.FloatField(null=True, blank=True)
    verdict_reason = models.TextField(blank=True)
    score = models.FloatField(null=True, blank=True, help_text="resilience score 0-100")
    score_low = models.FloatField(null=True, blank=True)
    score_high = models.FloatField(null=True, blank=True)
    dry_run = models.BooleanField(default=False)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="approved_runs",
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    abort_requested_at = models.DateTimeField(null=True, blank=True)
    abort_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    baseline_started_at = models.DateTimeField(null=True, blank=True)
    injected_at = models.DateTimeField(null=True, blank=True)
    reverted_at = models.DateTimeField(null=True, blank=True)
    recovery_started_at = models.DateTimeField(null=True, blank=True)
    analysis_started_at = models.DateTimeField(null=True, blank=True)
    # The analysis runs in its own task (queue ``analysis``): what it needs to end the run
    # is stored here, so a redelivered or re-queued analysis task needs no other memory.
    pending_outcome = models.JSONField(
        default=dict, blank=True, help_text="status, reason and breach the analysis ends with"
    )
    analysed_by = models.CharField(
        max_length=200, blank=True, help_text="worker (host:pid) that claimed the analysis"
    )
    analysis_requeued_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    summary = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.experiment.name}"

    @property
    def is_terminal(self) -> bool:
        return self.status in RunStatus.terminal()


class RunEvent(models.Model):
    """One line of a run's timeline: every transition and every notable fact."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    phase = models.CharField(max_length=20, choices=RunStatus.choices)
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.kind} {self.message}"


class KillSwitch(models.Model):
    """The global emergency stop (a single row, pk=1)."""

    engaged = models.BooleanField(default=False)
    engaged_at = models.DateTimeField(null=True, blank=True)
    engaged_by = models.CharField(max_length=150, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "kill switch"

    def __str__(self) -> str:
        return "engaged" if self.engaged else "released"

    @classmethod
    def get(cls) -> KillSwitch:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj
