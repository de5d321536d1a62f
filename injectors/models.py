"""The active-fault ledger and the agents that host injectors."""

from __future__ import annotations

from django.db import models


class FaultState(models.TextChoices):
    PENDING = "pending", "Pending (ledger written, not yet applied)"
    ACTIVE = "active", "Active"
    REVERTED = "reverted", "Reverted"
    FAILED = "failed", "Injection failed"

    @classmethod
    def open(cls) -> tuple[str, ...]:
        """States in which a fault may be in place and must eventually be reverted."""
        return (cls.PENDING, cls.ACTIVE)


class ActiveFault(models.Model):
    """The persistent ledger: written *before* a fault is injected, closed when reverted.

    ``expires_at`` is the latest instant the fault may stay in place; the mechanism
    enforces it by itself where it can (proxy rule TTL, SIGCONT watchdog) and the reaper
    enforces it otherwise. ``owner_worker`` identifies the orchestrator that injected it
    so the reaper can tell when that worker is gone.
    """

    run = models.ForeignKey(
        "experiments.Run", null=True, blank=True, on_delete=models.CASCADE, related_name="faults"
    )
    target = models.ForeignKey(
        "experiments.Target", on_delete=models.PROTECT, related_name="faults"
    )
    injector = models.CharField(max_length=100, db_index=True)
    params = models.JSONField(default=dict)
    intensity = models.FloatField(default=1.0)
    agent = models.CharField(max_length=100)
    state = models.CharField(
        max_length=16, choices=FaultState.choices, default=FaultState.PENDING, db_index=True
    )
    handle = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    injected_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(db_index=True)
    revert_requested_at = models.DateTimeField(null=True, blank=True)
    reverted_at = models.DateTimeField(null=True, blank=True)
    revert_reason = models.CharField(max_length=200, blank=True)
    owner_worker = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.injector} on {self.target} ({self.state})"


class Agent(models.Model):
    """A host-local process that hosts proxies and performs host-local injections.

    It consumes the Celery queue ``agent.<name>``; ``last_heartbeat`` tells the platform
    whether anyone is listening on that queue.
    """

    name = models.SlugField(max_length=100, unique=True)
    hostname = models.CharField(max_length=200, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    info = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def queue(self) -> str:
        return f"agent.{self.name}"
