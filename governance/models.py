"""Safety policies: what may be done to the targets of one environment, and when."""

from __future__ import annotations

from django.db import models

from experiments.choices import Environment


class Policy(models.Model):
    """The safety rules of one environment, checked by preflight before every run.

    Empty/None fields impose nothing, so a fresh policy only does what it is told:
    ``allowed_families`` (``["network", "http"]``) limits fault families;
    ``max_intensity`` caps the blast radius (share of connections, requests or
    instances); ``max_duration_s`` caps the fault; ``time_windows`` (weekday + hours in
    ``timezone``) say when runs may happen at all and ``blackouts`` (absolute periods)
    when they may not; ``requires_approval`` holds runs until a second user with the
    approver role approves them.
    """

    name = models.SlugField(max_length=100, unique=True)
    environment = models.CharField(max_length=16, choices=Environment.choices, unique=True)
    enabled = models.BooleanField(default=True)
    allowed_families = models.JSONField(
        default=list, blank=True, help_text='e.g. ["network", "http"]; empty: all families'
    )
    max_intensity = models.FloatField(null=True, blank=True, help_text="0 < x ≤ 1")
    max_duration_s = models.FloatField(null=True, blank=True)
    time_windows = models.JSONField(
        default=list,
        blank=True,
        help_text='e.g. [{"days": ["mon", "tue"], "start": "09:00", "end": "17:00"}]; '
        "empty: any time",
    )
    timezone = models.CharField(max_length=64, default="UTC")
    blackouts = models.JSONField(
        default=list,
        blank=True,
        help_text='e.g. [{"start": "2026-12-24T00:00Z", "end": "2026-12-27T00:00Z", '
        '"reason": "holidays"}]',
    )
    requires_approval = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["environment"]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return f"{self.name} ({self.environment})"
