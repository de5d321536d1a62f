"""Recording audit entries; every mutating service calls ``record``."""

from __future__ import annotations

from typing import Any

from django.db import models

from audit.models import AuditEntry, AuditSource

__all__ = ["record"]


def record(
    *,
    actor: Any,
    action: str,
    source: str,
    obj: models.Model | None = None,
    changes: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry. ``actor`` may be a user, None (the system) or a plain name."""
    user = actor if getattr(actor, "pk", None) is not None else None
    if user is not None:
        actor_name = user.get_username()
    elif isinstance(actor, str):
        actor_name = actor
    else:
        actor_name = ""
    return AuditEntry.objects.create(
        actor=user,
        actor_name=actor_name,
        action=action,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        changes=changes or {},
        source=AuditSource(source),
    )
