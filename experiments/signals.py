"""Signal hookups of the experiments app (imported from ``ExperimentsConfig.ready``)."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.dispatch import receiver

from scep.permissions import ensure_roles


@receiver(post_migrate, dispatch_uid="scep.ensure_roles")
def create_role_groups(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    """Make the role groups exist on every database, so a fresh install is usable at once.

    post_migrate fires once per app; acting only for this app avoids doing it ten times,
    and auth's tables exist by then because ``experiments`` is migrated after ``auth``.
    """
    if sender.name != "experiments":
        return
    ensure_roles(using=using)
