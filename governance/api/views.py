"""Safety policies over the API: everyone reads them (they explain refusals), admins
change them, and every change is audited."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import viewsets

from audit.models import AuditSource
from governance import services
from governance.api.serializers import PolicySerializer, TeamSerializer
from governance.models import Policy, Team
from scep.permissions import ADMIN, VIEWER


class PolicyViewSet(viewsets.ModelViewSet):
    """One safety policy per environment, checked by preflight before every run."""

    queryset = Policy.objects.all()
    serializer_class = PolicySerializer
    required_roles = {
        "list": VIEWER,
        "retrieve": VIEWER,
        "create": ADMIN,
        "update": ADMIN,
        "partial_update": ADMIN,
        "destroy": ADMIN,
    }

    def perform_create(self, serializer: PolicySerializer) -> None:
        serializer.instance = services.save_policy(
            None, serializer.validated_data, actor=self.request.user, source=AuditSource.API
        )

    def perform_update(self, serializer: PolicySerializer) -> None:
        serializer.instance = services.save_policy(
            serializer.instance,
            serializer.validated_data,
            actor=self.request.user,
            source=AuditSource.API,
        )

    def perform_destroy(self, instance: Any) -> None:
        services.delete_policy(instance, actor=self.request.user, source=AuditSource.API)


class TeamViewSet(viewsets.ReadOnlyModelViewSet):
    """The teams you belong to (all of them for superusers); managed in the admin."""

    queryset = Team.objects.prefetch_related("memberships__user")
    serializer_class = TeamSerializer
    team_scoped = True
    required_roles = {"list": VIEWER, "retrieve": VIEWER}

    def get_queryset(self) -> QuerySet:
        from experiments.services.access import teams_with_role

        teams = teams_with_role(self.request.user, VIEWER)
        queryset = super().get_queryset()
        return queryset if teams is None else queryset.filter(pk__in=teams)
