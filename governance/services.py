"""Checking runs against the safety policy of their target's environment.

Pure functions over a Policy and a validated spec, with ``now`` injectable, so that the
time rules can be tested with known clocks. Preflight calls :func:`enforce_policy`; the
API and admin call :func:`policy_field_errors` to refuse a policy that could never be
evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audit.services import record
from governance.models import POLICY_FIELDS, Policy

__all__ = [
    "DAYS",
    "PolicyViolation",
    "delete_policy",
    "enforce_policy",
    "policy_field_errors",
    "policy_for",
    "requires_approval",
    "save_policy",
]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class PolicyViolation(Exception):
    """A run breaks a rule of its environment's policy; the message names the policy."""


@dataclass(frozen=True)
class _Window:
    days: tuple[str, ...]
    start: tuple[int, int]
    end: tuple[int, int]


def policy_for(environment: str) -> Policy | None:
    """The enabled policy of an environment, if any."""
    return Policy.objects.filter(environment=environment, enabled=True).first()


def requires_approval(environment: str, *, dry_run: bool = False) -> bool:
    """Whether a new run there waits for an approver (dry runs inject nothing: never)."""
    policy = policy_for(environment)
    return bool(policy and policy.requires_approval and not dry_run)


def policy_field_errors(data: dict[str, Any]) -> dict[str, list[str]]:
    """Field path → reasons for policy values that cannot be evaluated."""
    errors: dict[str, list[str]] = {}
    families = data.get("allowed_families", [])
    if not isinstance(families, list) or not all(isinstance(f, str) and f for f in families):
        errors["allowed_families"] = ["must be a list of fault family names"]
    intensity = data.get("max_intensity")
    if intensity is not None and not 0 < intensity <= 1:
        errors["max_intensity"] = ["must be greater than 0 and at most 1"]
    duration = data.get("max_duration_s")
    if duration is not None and duration <= 0:
        errors["max_duration_s"] = ["must be positive"]
    try:
        ZoneInfo(str(data.get("timezone") or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        errors["timezone"] = ["unknown time zone (use an IANA name such as Europe/Paris)"]
    windows = data.get("time_windows", [])
    if not isinstance(windows, list):
        errors["time_windows"] = ["must be a list of windows"]
    else:
        for index, window in enumerate(windows):
            for reason in _window_errors(window):
                errors.setdefault(f"time_windows[{index}]", []).append(reason)
    blackouts = data.get("blackouts", [])
    if not isinstance(blackouts, list):
        errors["blackouts"] = ["must be a list of periods"]
    else:
        for index, period in enumerate(blackouts):
            for reason in _blackout_errors(period):
                errors.setdefault(f"blackouts[{index}]", []).append(reason)
    return errors


def _window_errors(window: Any) -> list[str]:
    if not isinstance(window, dict):
        return ['must be an object {"days": [...], "start": "HH:MM", "end": "HH:MM"}']
    reasons = []
    days = window.get("days")
    if not isinstance(days, list) or not days or any(d not in DAYS for d in days):
        reasons.append(f"days: a non-empty list of {', '.join(DAYS)}")
    start, end = window.get("start"), window.get("end")
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, str) or not _HHMM.match(value):
            reasons.append(f"{name}: a time as HH:MM")
    if not reasons and start >= end:
        reasons.append("start must be before end (split a window that crosses midnight)")
    extra = set(window) - {"days", "start", "end"}
    if extra:
        reasons.append(f"unknown keys: {', '.join(sorted(map(str, extra)))}")
    return reasons


def _blackout_errors(period: Any) -> list[str]:
    if not isinstance(period, dict):
        return ['must be an object {"start": ISO datetime, "end": ISO datetime, "reason": ...}']
    reasons = []
    moments = {}
    for name in ("start", "end"):
        moment = _moment(period.get(name))
        if moment is None:
            reasons.append(f"{name}: an ISO 8601 datetime")
        moments[name] = moment
    if not reasons and moments["start"] >= moments["end"]:
        reasons.append("start must be before end")
    if not isinstance(period.get("reason", ""), str):
        reasons.append("reason: must be text")
    return reasons


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = parse_datetime(value)
    except ValueError:
        return None
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo("UTC"))


def _windows(policy: Policy) -> list[_Window]:
    def hm(text: str) -> tuple[int, int]:
        hours, minutes = text.split(":")
        return int(hours), int(minutes)

    return [_Window(tuple(w["days"]), hm(w["start"]), hm(w["end"])) for w in policy.time_windows]


def enforce_policy(spec: Any, environment: str, *, approved: bool, now: datetime | None = None):
    """Raise PolicyViolation when the run breaks its environment's policy.

    The fault's whole exposure — from now through the baseline and the fault's duration —
    must fall inside one allowed window and clear every blackout, so a run cannot start
    at 16:59 and inject after the window closed.
    """
    policy = policy_for(environment)
    if policy is None:
        return
    label = f"policy {policy.name!r} ({environment})"
    now = now or timezone.now()
    family = spec.fault.type.split(".", 1)[0]
    if policy.allowed_families and family not in policy.allowed_families:
        raise PolicyViolation(
            f"{label}: fault family {family!r} is not allowed "
            f"(allowed: {', '.join(policy.allowed_families)})"
        )
    if policy.max_intensity is not None and spec.intensity > policy.max_intensity:
        raise PolicyViolation(
            f"{label}: blast radius {spec.intensity:g} exceeds the maximum {policy.max_intensity:g}"
        )
    if policy.max_duration_s is not None and spec.duration > policy.max_duration_s:
        raise PolicyViolation(
            f"{label}: duration {spec.duration:g} s exceeds the maximum {policy.max_duration_s:g} s"
        )
    until = now + timedelta(seconds=spec.baseline + spec.duration)
    for period in policy.blackouts:
        start, end = _moment(period["start"]), _moment(period["end"])
        if start < until and now < end:
            why = f" ({period['reason']})" if period.get("reason") else ""
            raise PolicyViolation(
                f"{label}: blackout {period['start']} – {period['end']}{why} overlaps the run"
            )
    windows = _windows(policy)
    if windows and not _inside_a_window(windows, ZoneInfo(policy.timezone), now, until):
        allowed = "; ".join(
            f"{','.join(w.days)} {w.start[0]:02d}:{w.start[1]:02d}-{w.end[0]:02d}:{w.end[1]:02d}"
            for w in windows
        )
        raise PolicyViolation(
            f"{label}: outside the allowed time windows ({allowed} {policy.timezone})"
        )
    if policy.requires_approval and not approved:
        raise PolicyViolation(f"{label}: the run needs an approval by a second user")


def _inside_a_window(windows: list[_Window], zone: ZoneInfo, now: datetime, until: datetime):
    local_now, local_until = now.astimezone(zone), until.astimezone(zone)
    day = DAYS[local_now.weekday()]
    for window in windows:
        if day not in window.days:
            continue
        opens = local_now.replace(hour=window.start[0], minute=window.start[1], second=0)
        closes = local_now.replace(hour=window.end[0], minute=window.end[1], second=0)
        if opens.replace(microsecond=0) <= local_now and local_until <= closes.replace(
            microsecond=0
        ):
            return True
    return False


@transaction.atomic
def save_policy(policy: Policy | None, data: dict[str, Any], *, actor: Any, source: str) -> Policy:
    """Create or change a policy (already validated) and audit the before/after."""
    before = {f: getattr(policy, f) for f in POLICY_FIELDS} if policy is not None else {}
    policy = policy or Policy()
    for key, value in data.items():
        setattr(policy, key, value)
    policy.save()
    after = {f: getattr(policy, f) for f in POLICY_FIELDS}
    changes = {
        f: {"before": before.get(f), "after": after[f]}
        for f in POLICY_FIELDS
        if before.get(f) != after[f]
    }
    action = "policy.update" if before else "policy.create"
    record(actor=actor, action=action, source=source, obj=policy, changes=changes)
    return policy


@transaction.atomic
def delete_policy(policy: Policy, *, actor: Any, source: str) -> None:
    record(actor=actor, action="policy.delete", source=source, obj=policy)
    policy.delete()
