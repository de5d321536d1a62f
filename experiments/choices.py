"""Choice sets for targets, runs and events; run status carries its terminal set."""

from __future__ import annotations

from django.db import models


class Environment(models.TextChoices):
    DEVELOPMENT = "development", "Development"
    STAGING = "staging", "Staging"
    PRODUCTION = "production", "Production"


class RunStatus(models.TextChoices):
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    QUEUED = "queued", "Queued"
    PREFLIGHT = "preflight", "Preflight"
    BASELINE = "baseline", "Baseline"
    INJECTING = "injecting", "Injecting"
    DURING = "during", "Fault active"
    REVERTING = "reverting", "Reverting"
    CLEANUP = "cleanup", "Cleanup"
    RECOVERY = "recovery", "Recovery"
    ANALYSING = "analysing", "Analysing"
    COMPLETED = "completed", "Completed"
    ABORTED = "aborted", "Aborted"
    FAILED = "failed", "Failed"

    @classmethod
    def terminal(cls) -> tuple[str, ...]:
        return (cls.COMPLETED, cls.ABORTED, cls.FAILED)

    @classmethod
    def active(cls) -> tuple[str, ...]:
        return tuple(s for s in cls.values if s not in cls.terminal())


class Verdict(models.TextChoices):
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
    INCONCLUSIVE = "inconclusive", "Inconclusive"


class EventKind(models.TextChoices):
    TRANSITION = "transition", "Transition"
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"
    FAULT = "fault", "Fault"
    STOP_CONDITION = "stop_condition", "Stop condition"
    ABORT = "abort", "Abort"
