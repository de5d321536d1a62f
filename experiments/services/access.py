"""Who may see and do what, team by team: the one place every view asks.

Targets belong to a team, experiments to their target's team, and everything under them
(runs, faults, findings …) follows. A user's *team roles* are their memberships
(``governance.TeamMembership``) plus, for the default team, the role their global role
group gives them: before teams existed every role holder saw everything, and everything
then lives in the default team, so nothing changes for them until teams are set up.
Superusers are admins in every team.

Views use :func:`scope` on every queryset (objects of other teams do not exist for the
user: 404, not 403) and :func:`require_team_role` before a change; the web UI calls the
same two functions.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework.exceptions import PermissionDenied

from scep.permissions import ROLES, user_role

__all__ = [
    "TEAM_PATHS",
    "require_team_role",
    "scope",
    "team_of",
    "team_role",
    "team_roles",
    "teams_with_role",
]

_RANK = {role: rank for rank, role in enumerate(ROLES)}

#: Lookup from a model to its team, for :func:`scope`.
TEAM_PATHS: dict[str, str] = {
    "experiments.target": "team",
    "experiments.experiment": "team",
    "experiments.run": "experiment__team",
    "injectors.activefault": "target__team",
    "analysis.finding": "run__experiment__team",
    "analysis.suggestion": "run__experiment__team",
    "notifications.notificationdelivery": "run__experiment__team",
    "campaigns.campaign": "team",
    "campaigns.campaignrun": "campaign__team",
    "campaigns.gameday": "campaign__team",
}


def team_roles(user: Any) -> dict[int, str] | None:
    """team id → the user's role there; None means every team as admin (superusers)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return {}
    if getattr(user, "is_superuser", False):
        return None
    cached = getattr(user, "_scep_team_roles", None)
    if cached is not None:
        return cached
    roles: dict[int, str] = {}
    if getattr(user, "is_active", True):
        memberships, global_role, default = _role_rows(user)
        roles.update(memberships)
        if global_role is not None:
            if default is None:
                from governance.models import default_team_id

                default = default_team_id()
            held = roles.get(default)
            if held is None or _RANK[global_role] > _RANK[held]:
                roles[default] = global_role
    user._scep_team_roles = roles
    return roles


def _role_rows(user: Any) -> tuple[dict[int, str], str | None, int | None]:
    """(memberships, global role, default team id) in one round trip.

    Why raw SQL: every API request asks this, and as three ORM queries it was a third of
    the run list's time (most of it building SQL, not running it). The global role is
    also left on the user for :func:`scep.permissions.user_role`.
    """
    from django.contrib.auth.models import Group
    from django.db import connection

    from governance.models import DEFAULT_TEAM, Team, TeamMembership

    q = connection.ops.quote_name
    user_groups = user._meta.get_field("groups").remote_field.through._meta.db_table
    marks = ", ".join(["%s"] * len(ROLES))
    sql = (
        f"SELECT 'm', team_id, role FROM {q(TeamMembership._meta.db_table)} WHERE user_id = %s"
        f" UNION ALL SELECT 'g', NULL, g.name FROM {q(Group._meta.db_table)} g"
        f" JOIN {q(user_groups)} ug ON ug.group_id = g.id"
        f" WHERE ug.user_id = %s AND g.name IN ({marks})"
        f" UNION ALL SELECT 'd', id, NULL FROM {q(Team._meta.db_table)} WHERE name = %s"
    )
    memberships: dict[int, str] = {}
    groups: set[str] = set()
    default: int | None = None
    with connection.cursor() as cursor:
        cursor.execute(sql, [user.pk, user.pk, *ROLES, DEFAULT_TEAM])
        for kind, team_id, role in cursor.fetchall():
            if kind == "m":
                memberships[team_id] = role
            elif kind == "g":
                groups.add(role)
            else:
                default = team_id
    held = [role for role in ROLES if role in groups]
    global_role = held[-1] if held else None
    user._scep_role = global_role
    return memberships, global_role, default


def team_role(user: Any, team_id: int | None) -> str | None:
    roles = team_roles(user)
    if roles is None:
        return ROLES[-1]
    return roles.get(team_id) if team_id is not None else None


def teams_with_role(user: Any, minimum: str) -> list[int] | None:
    """Ids of the teams where the user holds ``minimum`` or more (None: all teams)."""
    roles = team_roles(user)
    if roles is None:
        return None
    return [team for team, role in roles.items() if _RANK[role] >= _RANK[minimum]]


def scope(queryset: QuerySet, user: Any, path: str | None = None) -> QuerySet:
    """``queryset`` narrowed to the objects of the user's teams."""
    path = path or TEAM_PATHS[queryset.model._meta.label_lower]
    teams = teams_with_role(user, ROLES[0])
    if teams is None:
        return queryset
    return queryset.filter(**{f"{path}__in": teams})


def team_of(obj: Any) -> int | None:
    """The team id an object belongs to, following TEAM_PATHS; None for global objects."""
    path = TEAM_PATHS.get(obj._meta.label_lower)
    if path is None:
        return None
    current = obj
    parts = path.split("__")
    for part in parts[:-1]:
        current = getattr(current, part, None)
        if current is None:
            return None
    return getattr(current, f"{parts[-1]}_id", None)


def require_team_role(user: Any, team_id: int | None, minimum: str, *, what: str = "") -> None:
    """Raise PermissionDenied unless the user holds ``minimum`` in the team."""
    held = team_role(user, team_id)
    if held is not None and _RANK[held] >= _RANK[minimum]:
        return
    from governance.models import Team

    name = Team.objects.filter(pk=team_id).values_list("name", flat=True).first() or "?"
    doing = f" to {what}" if what else ""
    raise PermissionDenied(
        f"you need the {minimum!r} role in team {name!r}{doing}; you have {held or 'none'!r}"
    )


def highest_role(user: Any) -> str | None:
    """The user's highest role in any team (what the coarse per-endpoint check uses)."""
    roles = team_roles(user)
    if roles is None:
        return ROLES[-1]
    held = [_RANK[r] for r in roles.values()]
    global_role = user_role(user)
    if global_role is not None:
        held.append(_RANK[global_role])
    return ROLES[max(held)] if held else None
