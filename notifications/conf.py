"""Knobs of the notification subsystem, read lazily.

They are read at call time (not import time) from Django settings first, then the
environment, so tests can shrink the backoff with the ``settings`` fixture and an
operator can tune delivery without touching ``scep/settings.py``.
"""

from __future__ import annotations

from django.conf import settings

from scep.env import env_float, env_int

__all__ = ["backoff_base_s", "max_attempts", "timeout_s"]


def max_attempts() -> int:
    """Attempts per delivery, the first one included (``SCEP_NOTIFY_MAX_ATTEMPTS``)."""
    value = getattr(settings, "SCEP_NOTIFY_MAX_ATTEMPTS", None)
    return int(value) if value is not None else env_int("SCEP_NOTIFY_MAX_ATTEMPTS", 3, minimum=1)


def backoff_base_s() -> float:
    """First retry delay; each next one doubles (``SCEP_NOTIFY_BACKOFF_S``)."""
    value = getattr(settings, "SCEP_NOTIFY_BACKOFF_S", None)
    if value is not None:
        return float(value)
    return env_float("SCEP_NOTIFY_BACKOFF_S", 2.0, minimum=0.0)


def timeout_s() -> float:
    """HTTP timeout per attempt: short, a slow receiver must not hold a worker."""
    value = getattr(settings, "SCEP_NOTIFY_TIMEOUT_S", None)
    if value is not None:
        return float(value)
    return env_float("SCEP_NOTIFY_TIMEOUT_S", 5.0, minimum=0.1)
