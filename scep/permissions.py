"""Roles and the one permission class of the API.

SCEP has four roles, held as Django groups: ``viewer`` < ``operator`` < ``approver`` <
``admin``. Each role includes everything below it, and a superuser is always ``admin``.
``approver`` adds one right to an operator's: approving another user's run where the
environment's policy asks for it (docs/governance.md). Rather than
scattering role checks through view code, every view *declares* the minimum role per
action in a ``required_roles`` mapping, so the whole access matrix of a viewset can be
read in one place (and tested as a table)::

    class TargetViewSet(viewsets.ModelViewSet):
        required_roles = {"list": VIEWER, "retrieve": VIEWER, "create": ADMIN, ...}

Keys are viewset action names (``list``, ``create``, ``abort`` …) or, for plain API views,
HTTP methods in upper case. Anything undeclared falls back to a safe default: reading
needs ``viewer``, writing needs ``admin``. A forgotten declaration therefore locks an
endpoint down instead of opening it up.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

__all__ = [
    "ADMIN",
    "APPROVER",
    "OPERATOR",
    "ROLES",
    "VIEWER",
    "RolePermission",
    "ensure_roles",
    "has_role",
    "required_role",
    "user_role",
]

VIEWER = "viewer"
OPERATOR = "operator"
APPROVER = "approver"
ADMIN = "admin"

#: Lowest to highest; a role grants everything granted to the roles before it.
ROLES: tuple[str, ...] = (VIEWER, OPERATOR, APPROVER, ADMIN)
_RANK = {role: rank for rank, role in enumerate(ROLES)}


def ensure_roles(using: str = "default") -> None:
    """Create the role groups if missing; idempotent, so it is safe after every migrate."""
    from django.contrib.auth.models import Group

    for role in ROLES:
        Group.objects.using(using).get_or_create(name=role)


def user_role(user: Any) -> str | None:
    """The highest role the user holds, or None for anonymous users and users without one."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    if getattr(user, "is_superuser", False):
        return ADMIN
    if not getattr(user, "is_active", True):
        return None
    # Cache on the user object: a request may ask several times (permission, then view).
    cached = getattr(user, "_scep_role", False)
    if cached is not False:
        return cached
    names = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    held = [role for role in ROLES if role in names]
    role = held[-1] if held else None
    user._scep_role = role
    return role


def has_role(user: Any, minimum: str) -> bool:
    """True when the user's role is ``minimum`` or higher."""
    role = user_role(user)
    return role is not None and _RANK[role] >= _RANK[minimum]


def required_role(view: Any, request: Request) -> str:
    """The minimum role for this request, from the view's ``required_roles`` declaration."""
    declared: dict[str, str] = getattr(view, "required_roles", {}) or {}
    action = getattr(view, "action", None)
    if action and action in declared:
        return declared[action]
    if request.method in declared:
        return declared[request.method]
    if "*" in declared:
        return declared["*"]
    return VIEWER if request.method in SAFE_METHODS else ADMIN


class RolePermission(BasePermission):
    """Grants a request when the user holds the role the view declares for it.

    Returning False for an anonymous user lets DRF answer 401 (TokenAuthentication
    supplies the ``WWW-Authenticate`` header); an authenticated user with too low a role
    gets 403 with a message naming the role needed.
    """

    message = "This action needs a higher role."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if not hasattr(view, request.method.lower()):
            return True  # no handler: let DRF answer 405 rather than a misleading 403
        minimum = required_role(view, request)
        role = _coarse_role(user, view)
        if role is not None and _RANK[role] >= _RANK[minimum]:
            return True
        self.message = f"This action needs the {minimum!r} role; you have {role or 'no role'!r}."
        return False

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        """On team-scoped views, the role must be held in the object's own team."""
        if not getattr(view, "team_scoped", False):
            return True
        from experiments.services.access import team_of, team_role

        team = team_of(obj)
        if team is None:
            return True
        minimum = required_role(view, request)
        held = team_role(request.user, team)
        if held is not None and _RANK[held] >= _RANK[minimum]:
            return True
        self.message = (
            f"This action needs the {minimum!r} role in the object's team; "
            f"you have {held or 'no role'!r} there."
        )
        return False


def _coarse_role(user: Any, view: Any) -> str | None:
    """Team-scoped views admit the user's highest role in any team (the object check and
    the scoped querysets then confine them to their teams); platform-wide views (kill
    switch, audit, policies, channels) only the global role."""
    if getattr(view, "team_scoped", False):
        from experiments.services.access import highest_role

        return highest_role(user)
    return user_role(user)
