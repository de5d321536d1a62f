"""The append-only audit trail."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditSource(models.TextChoices):
    API = "api", "API"
    UI = "ui", "Web UI"
    ADMIN = "admin", "Admin"
    CLI = "cli", "CLI"
    SCHEDULER = "scheduler", "Scheduler"
    AGENT = "agent", "Agent"
    SYSTEM = "system", "System"


class AppendOnlyError(Exception):
    """Raised on any attempt to change or delete an audit entry."""


class AuditEntry(models.Model):
    """One mutating action: who, what, on which object, with which changes, from where.

    Rows are written once and never changed; ``save`` refuses updates and ``delete``
    refuses outright so that the trail can be trusted as evidence.
    """

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=16, choices=AuditSource.choices)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise AppendOnlyError("audit entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit entries are append-only")
