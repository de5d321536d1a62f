"""Safety policies: what may be done to the targets of one environment, and when."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from experiments.choices import Environment

#: The editable fields of a policy, in the order forms and audit entries show them.
POLICY_FIELDS = (
    "name",
    "environment",
    "enabled",
    "allowed_families",
    "max_intensity",
    "max_duration_s",
    "time_windows",
    "timezone",
    "blackouts",
    "requires_approval",
)


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


#: The team that rows created before teams existed (or without a team) belong to.
DEFAULT_TEAM = "default"


class Team(models.Model):
    """A group of people owning targets and the experiments on them.

    Users act within their teams only: they see a team's targets, experiments and runs
    when they are members, and what they may do there is their membership's role.
    """

    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="TeamMembership", related_name="scep_teams", blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeamMembership(models.Model):
    """A user's role within one team (viewer, operator, approver or admin)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(
        max_length=16,
        choices=[("viewer", "Viewer"), ("operator", "Operator"), ("approver", "Approver"),
                 ("admin", "Admin")],
    )  # fmt: skip

    class Meta:
        ordering = ["team", "user"]
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="uniq_team_membership")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.role}"


def default_team_id() -> int:
    """Primary key of the default team, created on first use (a model field default)."""
    team, _ = Team.objects.get_or_create(name=DEFAULT_TEAM)
    return team.pk
