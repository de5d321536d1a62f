"""Safety policies over the API: everyone reads them (they explain refusals), admins
change them, and every change is audited."""

from __future__ import annotations

from typing import Any

from rest_framework import viewsets

from audit.models import AuditSource
from governance import services
from governance.api.serializers import PolicySerializer
from governance.models import Policy
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
