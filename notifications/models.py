"""Where run outcomes are announced (channels) and what was sent there (deliveries)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from notifications.redact import redact_url
from scep.fields import EncryptedTextField

__all__ = [
    "ChannelKind",
    "DeliveryStatus",
    "Event",
    "NotificationChannel",
    "NotificationDelivery",
]


class ChannelKind(models.TextChoices):
    WEBHOOK = "webhook", "Generic webhook (JSON)"
    SLACK = "slack", "Slack incoming webhook"
    PAGERDUTY = "pagerduty", "PagerDuty Events API v2"


class Event(models.TextChoices):
    RUN_FINISHED = "run.finished", "Run completed"
    RUN_FAILED = "run.failed", "Run failed"
    RUN_ABORTED = "run.aborted", "Run aborted"
    FINDING_HIGH = "finding.high", "High or critical finding"
    TEST = "test", "Test event"

    @classmethod
    def subscribable(cls) -> list[str]:
        """Events a channel may subscribe to (``test`` is sent on demand only)."""
        return [e for e in cls.values if e != cls.TEST]


#: The PagerDuty endpoint used when a pagerduty channel is created without a URL.
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


def validate_events(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError("a list of event names")
    unknown = sorted(set(value) - set(Event.subscribable()))
    if unknown:
        raise ValidationError(f"unknown events {unknown}; known: {', '.join(Event.subscribable())}")


class NotificationChannel(models.Model):
    """A destination for run notifications.

    ``url`` and ``routing_key`` are secrets: encrypted in the column, write-only in the
    API, masked in the admin and in every error or log line (see ``redact``).
    """

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    url = EncryptedTextField(
        blank=True, help_text="secret: stored encrypted, never shown again (PagerDuty: optional)"
    )
    routing_key = EncryptedTextField(
        blank=True, help_text="PagerDuty integration (routing) key; secret"
    )
    events = models.JSONField(default=list, validators=[validate_events])
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def masked_url(self) -> str:
        return redact_url(self.url)

    def secrets(self) -> list[str]:
        """Every value that must never appear in clear in errors or logs."""
        return [s for s in (self.url, self.routing_key) if s]

    def clean(self) -> None:
        if self.kind == ChannelKind.PAGERDUTY:
            if not self.routing_key:
                raise ValidationError({"routing_key": "a PagerDuty channel needs a routing key"})
        elif not self.url:
            raise ValidationError({"url": "this channel kind needs a URL"})


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class NotificationDelivery(models.Model):
    """One event for one channel, and how sending it went.

    ``payload`` holds the channel-neutral content (no secrets), built when the event
    happened, so that a retry sends what was true then. At most one delivery exists per
    (channel, event, run): a run announced twice (worker and reaper racing) is sent once.
    """

    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.CharField(max_length=20, choices=Event.choices)
    run = models.ForeignKey(
        "experiments.Run",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notification_deliveries",
    )
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=10,
        choices=DeliveryStatus.choices,
        default=DeliveryStatus.PENDING,
        db_index=True,
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, help_text="redacted: secrets are masked")
    response_status = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "notification deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "event", "run"],
                condition=models.Q(run__isnull=False),
                name="uniq_delivery_per_channel_event_run",
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.channel.name}: {self.status}"
